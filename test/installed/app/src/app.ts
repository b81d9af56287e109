// The app on plain Node: node:http and the SDK's Node adapter, compiled by tsc, run by `node`.
import { createServer } from "node:http";
import { serve } from "@stepwise/sdk/node";
import { greet, stepwise } from "./functions.js";

const handler = serve({ client: stepwise, functions: [greet] });
const server = createServer((req, res) => void handler(req, res));
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log(`app listening on ${process.env.PORT}`));
