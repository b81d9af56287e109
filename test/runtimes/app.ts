/**
 * An app served by `@stepwise/sdk/fetch` on Bun (`Bun.serve`) or Deno (`Deno.serve`), bundled by
 * test/system/runtimes.test.ts and run there by the runtime itself. Settings come from the
 * environment (STEPWISE_DEV, STEPWISE_BASE_URL), as a user deploys it.
 */
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/fetch";
import { z } from "zod";

interface BunGlobal {
  version: string;
  serve(options: { port: number; hostname: string; fetch(request: Request): Promise<Response> }): unknown;
}
interface DenoGlobal {
  version: { deno: string };
  env: { get(name: string): string | undefined };
  serve(options: { port: number; hostname: string; onListen?(): void }, handler: (request: Request) => Promise<Response>): unknown;
}
const { Bun, Deno } = globalThis as { Bun?: BunGlobal; Deno?: DenoGlobal };
const runtime = Bun ? `bun ${Bun.version}` : Deno ? `deno ${Deno.version.deno}` : "unknown";

const client = new Stepwise({ id: "runtimes", schemas: { "runtime/hello": z.object({ name: z.string() }) } });
const hello = client.createFunction({ id: "hello", triggers: [{ event: "runtime/hello" }] }, async ({ event, step }) => {
  const where = await step.run("where", () => runtime);
  await step.sleep("nap", "200ms");
  return step.run("greet", () => `hello ${event.data.name} from ${where}`);
});

const handler = serve({ client, functions: [hello] });
const fetchHandler = (request: Request) => handler(request);
const port = Number(Bun ? (globalThis as { process?: { env: Record<string, string> } }).process?.env.PORT : Deno?.env.get("PORT"));
const ready = () => console.log(`listening on ${port} (${runtime})`);
if (Bun) {
  Bun.serve({ port, hostname: "127.0.0.1", fetch: fetchHandler });
  ready();
} else if (Deno) {
  Deno.serve({ port, hostname: "127.0.0.1", onListen: ready }, fetchHandler);
} else {
  throw new Error("run this bundle with bun or deno");
}
