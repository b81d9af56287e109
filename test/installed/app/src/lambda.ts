// The same functions as an AWS Lambda handler, bundled by esbuild.
import { serve } from "@stepwise/sdk/lambda";
import { greet, stepwise } from "./functions.js";

export const handler = serve({ client: stepwise, functions: [greet] });
