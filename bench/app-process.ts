/**
 * The benchmark app in a process of its own (so its work does not share a thread with the
 * orchestrator), reporting to the orchestrator over the IPC channel of `fork()`.
 */
import { createBenchApp, listen, Probe } from "./app.ts";

const probe = new Probe((message) => process.send!(message));
const { url } = await listen(createBenchApp(probe));
process.send!({ type: "ready", url });
process.on("disconnect", () => process.exit(0));
// Checkpoints go to the executor under test, which changes from one topology to the next.
process.on("message", (message: { type?: string; url?: string }) => {
  if (message.type === "executor" && message.url) process.env.STEPWISE_BASE_URL = message.url;
});
