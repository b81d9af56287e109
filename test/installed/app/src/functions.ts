// A user's functions, written against the installed packages only.
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { z } from "zod";

export const stepwise = new Stepwise({
  id: "installed",
  schemas: { "greet/requested": z.object({ name: z.string(), times: z.number().int().positive() }) },
});

export const greet = stepwise.createFunction({ id: "greet", triggers: [{ event: "greet/requested" }] }, async ({ event, step }) => {
  const name: string = event.data.name;
  // @ts-expect-error `times` is a number: the type flows from the zod schema into the handler.
  const wrong: string = event.data.times;
  void wrong;
  const line = await step.run("compose", () => `hello ${name} `.repeat(event.data.times).trim());
  await step.sleep("nap", "1s");
  // The step's code is told its idempotency key (a string) and attempt (a number).
  const shouted = await step.run("shout", ({ idempotencyKey, attempt }) => (idempotencyKey.length > 0 && attempt >= 0 ? line.toUpperCase() : ""));
  if (shouted.length === 0) throw new NonRetriableError("nothing to shout");
  return { shouted };
});

export async function sendTyped(): Promise<void> {
  await stepwise.send({ name: "greet/requested", data: { name: "Ada", times: 2 } });
  // @ts-expect-error `times` must be a number.
  await stepwise.send({ name: "greet/requested", data: { name: "Ada", times: "2" } });
}
