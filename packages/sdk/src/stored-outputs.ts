/**
 * Stored outputs an invocation left out. The executor sends a run's step outputs up to a byte
 * budget and, past it, only each one's size (`outputBytes`), so the request stays small enough
 * for any host however much the run has stored. Before the replay starts, the app reads those
 * outputs back (`POST /api/step-outputs`, signed), a few megabytes per request, and the replay
 * then sees every output as if it had come in the request.
 */
import { failureReason, PROTOCOL_VERSION, STEP_OUTPUTS_ROUTE, StepOutputsResponseSchema, type InvokeRequest, type StepOutputsRequest, type StoredStep } from "@stepwise/protocol";
import { postSigned, type ExecutorTransport } from "./api.ts";

/** Most output bytes asked for in one request (at least one step's, however large). */
const MAX_BYTES_PER_READ = 8 * 1024 * 1024;
const READ_TIMEOUT_MS = 30_000;

/** The stored outputs could not be read: the invocation cannot replay, and answers 503 so the executor tries again. */
export class StoredOutputsUnavailable extends Error {
  override name = "StoredOutputsUnavailable";
}

/** Whether `request` left any output out. */
export function leftOutputsOut(request: InvokeRequest): boolean {
  return request.steps.some(isLeftOut);
}

/** `request` with every left-out output read back from the executor. Throws {@link StoredOutputsUnavailable}. */
export async function withStoredOutputs(request: InvokeRequest, transport: ExecutorTransport | undefined): Promise<InvokeRequest> {
  const runLabel = `run ${request.run.id}`;
  const missing = request.steps.filter(isLeftOut);
  if (!transport) {
    throw new StoredOutputsUnavailable(`${runLabel}: ${outputsOf(missing)} left out of the invocation, and the app has no signing key to read them with (set STEPWISE_SIGNING_KEY)`);
  }
  const outputs = new Map<string, unknown>();
  for (const batch of batches(missing)) {
    for (const [id, output] of await read(request, batch, transport, runLabel)) outputs.set(id, output);
  }
  const steps = request.steps.map((step): StoredStep => {
    if (!isLeftOut(step)) return step;
    if (!outputs.has(step.id)) throw new StoredOutputsUnavailable(`${runLabel}: the executor has no stored output for step "${step.id}"`);
    const { outputBytes: _, ...rest } = step;
    return { ...rest, output: outputs.get(step.id) };
  });
  return { ...request, steps };
}

const outputsOf = (steps: StoredStep[]) => (steps.length === 1 ? `the stored output of step "${steps[0]!.id}"` : `${steps.length} stored step outputs`);

function isLeftOut(step: StoredStep): boolean {
  return step.status === "completed" && step.outputBytes !== undefined && !("output" in step);
}

/** Steps in groups of at most {@link MAX_BYTES_PER_READ} output bytes, in order. */
function batches(steps: StoredStep[]): StoredStep[][] {
  const groups: StoredStep[][] = [];
  let bytes = Infinity;
  for (const step of steps) {
    const size = step.outputBytes ?? 0;
    if (bytes + size > MAX_BYTES_PER_READ) groups.push([]), (bytes = 0);
    groups.at(-1)!.push(step);
    bytes += size;
  }
  return groups;
}

async function read(request: InvokeRequest, steps: StoredStep[], transport: ExecutorTransport, runLabel: string): Promise<Array<[string, unknown]>> {
  const asked: StepOutputsRequest = {
    version: PROTOCOL_VERSION,
    run: { id: request.run.id, appId: request.run.appId, functionId: request.run.functionId },
    steps: steps.map((step) => step.id),
  };
  // The outputs as the executor measured them, plus room for the IDs and the JSON around them.
  const expected = steps.reduce((sum, step) => sum + (step.outputBytes ?? 0) + step.id.length * 6 + 32, 0);
  const where = `${transport.baseUrl}${STEP_OUTPUTS_ROUTE}`;
  let answer;
  try {
    answer = await postSigned(transport, STEP_OUTPUTS_ROUTE, JSON.stringify(asked), { timeoutMs: READ_TIMEOUT_MS, maxBytes: Math.ceil(expected * 1.1) + 64 * 1024 });
  } catch (error) {
    throw new StoredOutputsUnavailable(`${runLabel}: could not read ${outputsOf(steps)} from ${where}: ${failureReason(error)}`);
  }
  if (answer.status !== 200 || answer.text === null) {
    const detail = answer.text === null ? "an answer larger than the outputs asked for" : answer.text.slice(0, 200);
    throw new StoredOutputsUnavailable(`${runLabel}: reading stored step outputs from ${where} answered ${answer.status} (${detail})`);
  }
  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch {
    throw new StoredOutputsUnavailable(`${runLabel}: the stored step outputs from ${where} are not JSON (${answer.text.length} bytes, cut off or not the executor's)`);
  }
  const parsed = StepOutputsResponseSchema.safeParse(body);
  if (!parsed.success) throw new StoredOutputsUnavailable(`${runLabel}: the answer from ${where} is not a list of stored step outputs`);
  return parsed.data.steps.map((step) => [step.id, step.output]);
}
