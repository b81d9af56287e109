/** The API's answers, as the dashboard reads them (the engine's own types, without its code). */
export type { BulkCancelResult, BulkReplayResult, EventPage, FunctionView, RunPage, RunSummary, RunView, StepView } from "@stepwise/engine";
