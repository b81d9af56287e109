// The same functions as a Cloudflare Worker, bundled by wrangler.
import { serve } from "@stepwise/sdk/fetch";
import { greet, stepwise } from "./functions.js";

const handler = serve({ client: stepwise, functions: [greet] });

export default {
  fetch(request: Request, env: Record<string, string | undefined>): Promise<Response> {
    return handler(request, env);
  },
};
