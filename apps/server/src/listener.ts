/**
 * The Node executor's HTTP listener. `POST /api/checkpoints` (a request per checkpointed step,
 * or per batch of them: the hot path) is answered straight on node:http by the same handler the Hono API uses
 * for it; every other request goes to the Hono API through its Node adapter, whose web
 * Request and Response objects cost about 0.1 ms of CPU per request more.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { CHECKPOINT_ROUTE, HEADERS } from "@stepwise/protocol";
import { InputError, type Logger } from "@stepwise/engine";
import { decodeUtf8, tooLargeMessage, type CheckpointHandler, type PlainAnswer } from "@stepwise/api";

export interface ListenerOptions {
  /** The Hono API's fetch, for every other request. */
  fetch: (request: Request) => Response | Promise<Response>;
  checkpoint: CheckpointHandler;
  maxBodyBytes: number;
  log: Logger;
}

export function createListener(options: ListenerOptions): RequestListener {
  const api = getRequestListener(options.fetch);
  return (req, res) => {
    if (req.method !== "POST" || req.url !== CHECKPOINT_ROUTE) return void api(req, res);
    void answerCheckpoint(options, req, res);
  };
}

async function answerCheckpoint(options: ListenerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let answer: PlainAnswer;
  try {
    const signature = req.headers[HEADERS.signature];
    answer = await options.checkpoint({ signature: typeof signature === "string" ? signature : undefined, text: () => readText(req, options.maxBodyBytes) });
  } catch (error) {
    // The client went away (aborted mid-body): nobody to answer.
    if (res.destroyed) return;
    options.log.error(`POST ${CHECKPOINT_ROUTE} failed: ${error instanceof Error ? error.stack : String(error)}`);
    return send(res, req, 500, { error: "Internal error in the executor; see its log" });
  }
  send(res, req, answer.status, answer.body);
}

function send(res: ServerResponse, req: IncomingMessage, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  // A body left unread (refused before reading it, or too large) would be taken for the next request.
  const unread = !req.complete;
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...(unread && { connection: "close" }),
  });
  res.end(text, () => {
    if (unread) req.destroy();
  });
}

/** The body as UTF-8 text, refused (413) as soon as it passes `maxBytes`, declared or sent. */
function readText(req: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers["content-length"] ?? 0) > maxBytes) return reject(new InputError(tooLargeMessage(maxBytes), 413));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        req.pause();
        return reject(new InputError(tooLargeMessage(maxBytes), 413));
      }
      chunks.push(chunk);
    });
    req.once("end", () => {
      try {
        resolve(decodeUtf8(Buffer.concat(chunks)));
      } catch (error) {
        reject(error);
      }
    });
    req.once("error", reject);
    req.once("aborted", () => reject(new Error("the request was aborted")));
  });
}
