/**
 * The benchmark app in a process of its own (so its work does not share a thread with the
 * orchestrator), reporting to the orchestrator over the IPC channel of `fork()`.
 */
import { createBenchApp, listen, Probe, type ProbeMessage } from "./app.ts";

// What the functions see is kept here and sent when a run finishes, in one message: a message
// per step would wake the orchestrator's process at every step, on the cores under test.
const seen: ProbeMessage[] = [];
const probe = new Probe((message) => {
  seen.push(message);
  if (message.type === "finish") process.send!(seen.splice(0));
});
const { url } = await listen(createBenchApp(probe));
process.send!({ type: "ready", url });
process.on("disconnect", () => process.exit(0));
// Checkpoints go to the executor under test, which changes from one topology to the next.
process.on("message", (message: { type?: string; url?: string }) => {
  if (message.type === "executor" && message.url) process.env.STEPWISE_BASE_URL = message.url;
});
