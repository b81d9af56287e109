import { describe, expect, it } from "vitest";
import { appUrlProblem } from "../src/app-urls.ts";

const strict = { allowPrivate: false };
const allowing = { allowPrivate: true };

describe("app URLs the executor will call", () => {
  it.each(["https://shop.example/api/durable", "http://203.0.113.7:3000/api/durable", "https://[2001:db8::1]/api/durable"])("calls the public %s", (url) => {
    expect(appUrlProblem(url, strict)).toBeNull();
  });

  it.each([
    ["file:///etc/passwd", /http:\/\/ or https:\/\/, not file:/],
    ["javascript:alert(1)", /not javascript:/],
    ["data:text/plain,hi", /not data:/],
    ["gopher://internal:70/", /not gopher:/],
    ["not a url", /is not a URL/],
    ["http://169.254.169.254/latest/meta-data/", /169.254.169.254 is a metadata address/],
    ["http://169.254.10.1/", /link-local/],
    ["http://metadata.google.internal/computeMetadata/v1/", /metadata address/],
    ["http://100.100.100.200/", /metadata address/],
    ["http://[fd00:ec2::254]/", /metadata address/],
    ["http://[fe80::1]/", /link-local/],
    ["http://[::ffff:169.254.169.254]/", /metadata address/],
    ["http://[64:ff9b::a9fe:a9fe]/", /metadata address/], // NAT64 of 169.254.169.254
    ["http://[2002:a9fe:a9fe::]/", /metadata address/], // 6to4 of it
    ["http://[::ffff:0:a9fe:a9fe]/", /metadata address/], // SIIT
  ])("never calls %s, even where private addresses are allowed", (url, message) => {
    expect(appUrlProblem(url, allowing)).toMatch(message);
    expect(appUrlProblem(url, strict)).toMatch(message);
  });

  it.each([
    "http://127.0.0.1:3000/api/durable",
    "http://localhost:3000/api/durable",
    "http://app.localhost/api/durable",
    "http://2130706433/api/durable", // 127.0.0.1 written as one number
    "http://0x7f.1/api/durable",
    "http://0.0.0.0:3000/",
    "http://[::1]:3000/",
    "http://[::ffff:127.0.0.1]/",
    "http://10.1.2.3/",
    "http://172.20.0.5/",
    "http://192.168.1.10/",
    "http://100.64.0.1/",
    "http://[fd12:3456::1]/",
    "http://[64:ff9b::7f00:1]/", // NAT64 of 127.0.0.1
    "http://[64:ff9b::a00:1]/", // NAT64 of 10.0.0.1
    "http://[64:ff9b:1::a00:1]/", // NAT64 local use
    "http://[::127.0.0.1]/", // IPv4-compatible
    "http://[2002:a00:1::]/", // 6to4 of 10.0.0.1
    "http://[fec0::1]/", // site-local
    "http://[ff02::1]/", // multicast
    "http://198.18.0.1/",
    "http://192.0.0.8/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://app:3000/api/durable", // a container's name
    "http://kubernetes.default.svc/",
    "http://host.docker.internal/",
    "http://printer.local/",
  ])("calls loopback or private %s only where allowed", (url) => {
    expect(appUrlProblem(url, strict)).toMatch(/(loopback|private) address.*STEPWISE_ALLOW_PRIVATE_APP_URLS=1/);
    expect(appUrlProblem(url, allowing)).toBeNull();
  });
});
