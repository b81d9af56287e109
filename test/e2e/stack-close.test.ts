/**
 * Closing a stack while the executor is calling the app (a cron tick every second) ends: a
 * kept-alive connection busy when close() began, and used again by the next tick, must not hold
 * the app's server open (it did: cron.test.ts's afterAll timed out after 60 s now and then).
 */
import { Stepwise } from "@stepwise/sdk";
import { describe, expect, it } from "vitest";
import { STORE_KINDS, startStack } from "../support/stack.ts";

const client = new Stepwise({ id: "close-e2e", dev: true });
const beat = client.createFunction({ id: "beat", triggers: [{ cron: "* * * * * *" }], retries: 0 }, async ({ step }) => step.run("beat", () => 1));

describe.each(STORE_KINDS)("stack.close() on %s", (store) => {
  it("ends while an invocation of the app is in flight and the ticks keep coming", async () => {
    let arrived!: () => void;
    const invoked = new Promise<void>((resolve) => (arrived = resolve));
    let begin!: () => void;
    const closeBegun = new Promise<void>((resolve) => (begin = resolve));
    // Each invocation (a POST; the registration is a PUT) is held until close() has begun: its connection is busy then.
    const hold = async (request: Request, app: (request: Request) => Promise<Response>) => {
      if (request.method === "POST") arrived(), await closeBegun;
      return app(request);
    };
    const stack = await startStack({ store, client, functions: [beat], intercept: hold });
    await invoked;
    const closing = stack.close();
    begin();
    const outcome = await Promise.race([closing.then(() => "closed"), new Promise((resolve) => setTimeout(resolve, 15_000, "still open after 15 s"))]);
    expect(outcome).toBe("closed");
  });
});
