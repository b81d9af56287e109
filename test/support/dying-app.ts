/**
 * An app process that dies in the middle of an invocation, as the executor sees it: a step's
 * code calls `death.die()` and never ends (the process is gone), and the platform in front of the
 * app (a gateway, a load balancer) answers that invocation with a 502 page. Only that one: the
 * executor's next request reaches a new process.
 */
import { signal, type Signal } from "./signal.ts";

export class AppDeath {
  private pending?: Signal;

  /** Arms the next death: the next `die()` will be answered for. */
  arm(): void {
    this.pending = signal();
  }

  /** Whether a death is armed and has not happened yet. */
  get armed(): boolean {
    return this.pending !== undefined;
  }

  /** Called by a step's code: the process dies here. */
  die(): void {
    this.pending?.set();
  }

  /** For `startStack({ intercept })`: the gateway's answer to the invocation the app died in. */
  readonly gateway = async (request: Request, app: (request: Request) => Promise<Response>): Promise<Response> => {
    const death = this.pending;
    if (request.method !== "POST" || !death) return app(request);
    const answer = app(request);
    const first = await Promise.race([answer.then(() => "answered" as const), death.happened.then(() => "died" as const)]);
    if (first === "answered") return answer;
    this.pending = undefined;
    return new Response("<html><body><h1>502 Bad Gateway</h1></body></html>", { status: 502, headers: { "content-type": "text/html" } });
  };
}
