/**
 * The example app: a Hono server on Node exposing the shop's functions (from
 * @stepwise/example-shop, shared with the Worker and Lambda examples) on /api/durable.
 * `npm run dev` at the repository root starts it next to the dev server.
 */
import { serve as serveNode } from "@hono/node-server";
import { serve } from "@stepwise/sdk/hono";
import { Hono } from "hono";
import { functions, stepwise } from "@stepwise/example-shop";

const port = Number(process.env.PORT ?? 3000);
const app = new Hono();
app.get("/", (c) => c.text("Stepwise example shop: functions are served on /api/durable\n"));
app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client: stepwise, functions }));

serveNode({ fetch: app.fetch, port, hostname: "127.0.0.1" }, (info) => {
  console.log(`example app listening on http://127.0.0.1:${info.port}/api/durable`);
});
