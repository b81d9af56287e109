/**
 * The benchmark app in a process of its own (so its work does not share a thread with the
 * orchestrator), reporting to the orchestrator over the IPC channel of `fork()`.
 */
import { createBenchApp, listen, Probe } from "./app.ts";

const probe = new Probe((message) => process.send!(message));
const { url } = await listen(createBenchApp(probe));
process.send!({ type: "ready", url });
process.on("disconnect", () => process.exit(0));
