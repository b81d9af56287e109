/**
 * The Upstash bridge, driven by the official @upstash/redis client against the local Redis.
 * Every key lives under a per-run prefix and is deleted afterwards: other suites share this Redis.
 */
import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { Redis as Upstash, errors, type RedisConfigNodejs } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startUpstashBridge, type UpstashBridge } from "../src/index.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const TOKEN = "test-token";
const P = `test:upstash-bridge:${process.pid}:${randomBytes(4).toString("hex")}:`;

function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s = connect({ host: hostname, port: Number(port || 6379) });
    s.setTimeout(1_000, () => (s.destroy(), resolve(false)));
    s.once("connect", () => (s.end(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

// On CI the suite always runs (and fails loudly without Redis); locally it skips visibly.
const skip = process.env.CI !== "true" && !(await reachable(REDIS_URL));
if (skip) console.warn(`[upstash-bridge.test] SKIPPED: no Redis at ${REDIS_URL} (start redis-server, or set CI=true to fail instead)`);

const CLIENTS: Array<[string, Partial<RedisConfigNodejs>]> = [
  ["base64 encoding, auto-pipelined (client defaults)", {}],
  ["base64 encoding, one request per command", { enableAutoPipelining: false }],
  ["plain UTF-8 encoding, one request per command", { responseEncoding: false, enableAutoPipelining: false }],
];

describe.skipIf(skip)("upstash bridge", () => {
  let bridge: UpstashBridge;
  let raw: IORedis;
  const client = (opts: Partial<RedisConfigNodejs> = {}) =>
    new Upstash({ url: bridge.url, token: TOKEN, enableTelemetry: false, ...opts });
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(bridge.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as unknown };
  };

  beforeAll(async () => {
    bridge = await startUpstashBridge({ token: TOKEN, redisUrl: REDIS_URL });
    raw = new IORedis(REDIS_URL);
  });

  afterAll(async () => {
    if (raw) {
      const keys: string[] = [];
      for await (const batch of raw.scanStream({ match: `${P}*`, count: 500 })) keys.push(...(batch as string[]));
      if (keys.length) await raw.del(...keys);
      raw.disconnect();
    }
    await bridge?.close();
  });

  describe.each(CLIENTS)("@upstash/redis with %s", (label, opts) => {
    const k = (name: string) => `${P}${label.replace(/\W+/g, "_")}:${name}`;
    let redis: Upstash;
    beforeAll(() => {
      redis = client(opts);
    });

    it("strings: set/get/del, incr, unicode and binary-ish text", async () => {
      expect(await redis.set(k("s"), "hello")).toBe("OK");
      expect(await redis.get(k("s"))).toBe("hello");
      expect(await redis.get(k("missing"))).toBeNull();
      expect(await redis.incr(k("n"))).toBe(1);
      expect(await redis.incrby(k("n"), 41)).toBe(42);
      for (const value of ["héllo wörld ✓ 日本語 🎉", "\u0000\u0001\u0002\u007f\u00ff\n\r\t end", "QUJD", "OK?", "  spaced  "]) {
        await redis.set(k("u"), value);
        expect(await redis.get(k("u"))).toBe(value);
      }
      expect(await redis.del(k("s"), k("n"), k("u"))).toBe(3);
      expect(await redis.exists(k("s"))).toBe(0);
    });

    it("hashes, sorted sets with scores, lists", async () => {
      expect(await redis.hset(k("h"), { a: 1, b: "x", obj: { n: 1 } })).toBe(3);
      expect(await redis.hget(k("h"), "b")).toBe("x");
      expect(await redis.hgetall(k("h"))).toEqual({ a: 1, b: "x", obj: { n: 1 } });

      await redis.zadd(k("z"), { score: 2, member: "b" }, { score: 1.5, member: "a" }, { score: -3, member: "c" });
      expect(await redis.zrange(k("z"), 0, -1, { withScores: true })).toEqual(["c", -3, "a", 1.5, "b", 2]);
      expect(await redis.zscore(k("z"), "a")).toBe(1.5);

      expect(await redis.rpush(k("l"), "one", "two")).toBe(2);
      expect(await redis.lpush(k("l"), "zero")).toBe(3);
      expect(await redis.lrange(k("l"), 0, -1)).toEqual(["zero", "one", "two"]);
      expect(await redis.lpop(k("l"))).toBe("zero");
      expect(await redis.llen(k("l"))).toBe(2);
    });

    it("JSON objects round-trip through the client's serialization", async () => {
      const doc = { id: "r1", steps: [1, 2, { ok: true }], nested: { s: "t", u: "ü", none: null } };
      await redis.set(k("json"), doc);
      expect(await redis.get(k("json"))).toEqual(doc);
      expect(await raw.get(k("json"))).toBe(JSON.stringify(doc));
    });

    it("a 2 MB value", async () => {
      const big = randomBytes(1_536 * 1024).toString("base64") + "é"; // ~2 MB, ends in non-ASCII
      await redis.set(k("big"), big);
      expect(await redis.get(k("big"))).toBe(big);
      expect(await raw.strlen(k("big"))).toBe(Buffer.byteLength(big));
    });

    it("a Redis error surfaces as an UpstashError with Redis's message", async () => {
      await redis.set(k("notnum"), "abc");
      const err = await redis.incr(k("notnum")).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(errors.UpstashError);
      expect((err as Error).message).toContain("ERR value is not an integer or out of range");
    });

    it("pipeline(): commands are independent; one failure does not stop the others", async () => {
      const build = () => redis.pipeline().set(k("p"), "v").incr(k("p")).get(k("p")).incr(k("pn"));
      await expect(build().exec()).rejects.toThrow(/Command 2 \[ incr \] failed: ERR value is not an integer/);
      const results = await build().exec({ keepErrors: true });
      expect(results.map((r) => r.result)).toEqual(["OK", undefined, "v", 2]);
      expect(results[1]?.error).toMatch(/^ERR value is not an integer/);
    });

    it("multi(): results in order, runtime errors per command, atomic under concurrency", async () => {
      expect(await redis.multi().set(k("t"), "1").incr(k("t")).get(k("t")).exec()).toEqual(["OK", 2, 2]);
      // As in Redis, a command failing at EXEC time does not undo the others.
      await expect(redis.multi().set(k("t"), "a").incr(k("t")).exec()).rejects.toThrow(/Command 2 \[ incr \] failed/);
      expect(await redis.get(k("t"))).toBe("a");
      // Each transaction bumps the counter twice: if transactions interleaved, some GET would be odd.
      const seen = await Promise.all(
        Array.from({ length: 40 }, () => redis.multi().incr(k("c")).incr(k("c")).get<number>(k("c")).exec()),
      );
      for (const [, , value] of seen) expect(Number(value) % 2).toBe(0);
      expect(await redis.get(k("c"))).toBe(80);
    });

    it("scripts: eval, evalsha, scriptLoad, and createScript's NOSCRIPT fallback", async () => {
      expect(await redis.eval("return {KEYS[1], ARGV[1], 7, {ARGV[2]}}", [k("key")], ["a1", "ü"])).toEqual([k("key"), "a1", 7, ["ü"]]);
      const body = `-- ${P}${label}\nreturn ARGV[1] .. (redis.call('GET', KEYS[1]) or '')`;
      const sha = createHash("sha1").update(body).digest("hex");
      await redis.set(k("sv"), "world");
      expect(await redis.scriptExists(sha)).toEqual([0]);
      await expect(redis.evalsha(sha, [k("sv")], ["hi "])).rejects.toThrow(/NOSCRIPT/);
      // First EVALSHA answers NOSCRIPT; the helper then falls back to EVAL, which caches it.
      const script = redis.createScript<string>(body);
      expect(await script.exec([k("sv")], ["hello "])).toBe("hello world");
      expect(await redis.scriptExists(sha)).toEqual([1]);
      expect(await redis.evalsha(sha, [k("sv")], ["hey "])).toBe("hey world");
      const loaded = await redis.scriptLoad(`return 'loaded-${label}'`);
      expect(await redis.evalsha(loaded, [], [])).toBe(`loaded-${label}`);
    });

    it("200 concurrent commands", async () => {
      const incrs = await Promise.all(Array.from({ length: 200 }, () => redis.incr(k("cc"))));
      expect([...incrs].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      await Promise.all(Array.from({ length: 200 }, (_, i) => redis.set(k(`cc:${i}`), `v${i}`)));
      const values = await Promise.all(Array.from({ length: 200 }, (_, i) => redis.get(k(`cc:${i}`))));
      expect(values).toEqual(Array.from({ length: 200 }, (_, i) => `v${i}`));
    });
  });

  describe("protocol details", () => {
    it("401 with Upstash's error body on a wrong or missing token", async () => {
      const wrong = client({ token: "nope" });
      const err = await wrong.get(`${P}x`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(errors.UpstashError);
      expect((err as Error).message).toMatch(/Unauthorized/);
      for (const authorization of ["Bearer nope", ""]) {
        const res = await post("/", ["PING"], { authorization });
        expect(res).toMatchObject({ status: 401, body: { error: "Unauthorized" } });
      }
      expect((await fetch(`${bridge.url}/ping?_token=${TOKEN}`)).status).toBe(200);
    });

    it("base64 encoding: strings base64, top-level OK plain, integers and nil as JSON", async () => {
      const b64 = { "upstash-encoding": "base64" };
      expect((await post("/", ["SET", `${P}e`, "héllo"], b64)).body).toEqual({ result: "OK" });
      expect((await post("/", ["GET", `${P}e`], b64)).body).toEqual({ result: Buffer.from("héllo").toString("base64") });
      expect((await post("/", ["GET", `${P}e`])).body).toEqual({ result: "héllo" });
      expect((await post("/", ["STRLEN", `${P}e`], b64)).body).toEqual({ result: 6 });
      expect((await post("/", ["GET", `${P}none`], b64)).body).toEqual({ result: null });
      const nested = await post("/", ["EVAL", "return {1, 'OK', {ARGV[1], false}}", 0, "x"], b64);
      expect(nested.body).toEqual({ result: [1, "T0s=", ["eA==", null]] });
      const pipe = await post("/pipeline", [["SET", `${P}e`, "v"], ["GET", `${P}e`], ["NOPE"]], b64);
      expect(pipe.body).toEqual([{ result: "OK" }, { result: "dg==" }, { error: expect.stringMatching(/^ERR unknown command 'NOPE'/) }]);
      expect(pipe.headers.get("upstash-sync-token")).toMatch(/^\d+$/);
    });

    it("binary values stay byte-exact with base64, and the path form takes a raw body", async () => {
      const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x80, 0x0a]);
      await raw.set(`${P}bin`, bytes);
      expect((await post("/", ["GET", `${P}bin`], { "upstash-encoding": "base64" })).body).toEqual({ result: bytes.toString("base64") });
      const res = await fetch(`${bridge.url}/set/${encodeURIComponent(`${P}bin2`)}?EX=100`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
        body: bytes,
      });
      expect(await res.json()).toEqual({ result: "OK" });
      expect(await raw.getBuffer(`${P}bin2`)).toEqual(bytes);
      expect(await raw.ttl(`${P}bin2`)).toBeGreaterThan(90);
      const get = await fetch(`${bridge.url}/get/${encodeURIComponent(`${P}e`)}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(await get.json()).toEqual({ result: "v" });
    });

    it("errors: 400 with Redis's message; aborted transactions change nothing", async () => {
      expect(await post("/", ["INCR", `${P}e`])).toMatchObject({ status: 400, body: { error: "ERR value is not an integer or out of range" } });
      const aborted = await post("/multi-exec", [["SET", `${P}never`, "x"], ["NOPE"]]);
      expect(aborted.status).toBe(400);
      expect(aborted.body).toEqual({ error: expect.stringMatching(/^EXECABORT .*unknown command 'NOPE'/) });
      expect(await raw.exists(`${P}never`)).toBe(0);
      expect((await post("/", "not a command")).status).toBe(400);
      expect((await post("/", ["GET", `${P}e`], { "upstash-response-format": "resp2" })).status).toBe(400);
    });

    it("refuses streaming, blocking and connection-state commands with a clear error", async () => {
      for (const cmd of [["SUBSCRIBE", "c"], ["BLPOP", `${P}q`, 0], ["SELECT", 1], ["MULTI"]]) {
        const res = await post("/", cmd);
        expect(res.status).toBe(400);
        expect(res.body).toEqual({ error: expect.stringContaining("not available on the upstash bridge") });
      }
      // The client's subscribe() opens POST /subscribe/<channel> as an event stream.
      const sub = await post(`/subscribe/${P}chan`, [], { accept: "text/event-stream" });
      expect(sub).toMatchObject({ status: 400, body: { error: expect.stringContaining("'subscribe'") } });
      expect((await post("/multi-exec", [["SET", `${P}never`, "x"], ["WATCH", "k"]])).status).toBe(400);
      expect(await raw.exists(`${P}never`)).toBe(0);
    });
  });
});
