/**
 * The example shop as an AWS Lambda handler: deploy it behind an API Gateway HTTP API or REST
 * API route `ANY /api/durable`, or a Function URL. Settings (`STEPWISE_SIGNING_KEY`...) come
 * from the function's environment variables, read per request.
 */
import { functions, stepwise } from "@stepwise/example-shop";
import { serve } from "@stepwise/sdk/lambda";

/** The Lambda entry point (`handler.handler` once bundled to `handler.js`). */
export const handler = serve({ client: stepwise, functions });
