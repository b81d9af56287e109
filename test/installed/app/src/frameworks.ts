// Every framework entry of the SDK, imported as a user would, without the framework installed:
// each must typecheck under strict settings with the declarations checked (`hono` excepted, whose
// entry needs hono itself).
import { serve as astro } from "@stepwise/sdk/astro";
import { serve as express } from "@stepwise/sdk/express";
import { serve as fastify } from "@stepwise/sdk/fastify";
import { serve as h3 } from "@stepwise/sdk/h3";
import { serve as koa } from "@stepwise/sdk/koa";
import { serve as next } from "@stepwise/sdk/next";
import { serve as reactRouter } from "@stepwise/sdk/react-router";
import { serve as sveltekit } from "@stepwise/sdk/sveltekit";
import { greet, stepwise } from "./functions.js";

const options = { client: stepwise, functions: [greet] };
export const handlers = {
  astro: astro(options),
  express: express(options),
  fastify: fastify({ ...options, path: "/api/durable" }),
  h3: h3(options),
  koa: koa(options),
  next: next(options),
  reactRouter: reactRouter(options),
  sveltekit: sveltekit(options),
};
