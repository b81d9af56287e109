/**
 * Which URLs the executor will call as an app's `/api/durable`. An app names its own URL when
 * it registers, and the executor then sends it every invocation (event data, step outputs,
 * signatures) and takes its answers: a URL must not turn the executor into a client of what
 * only it can reach. So: http(s) only; never link-local or cloud metadata addresses; loopback
 * and private addresses only in dev mode or where the operator allows them. URLs the operator
 * gives the executor itself (`stepwise start --app …`) are theirs to choose and not checked.
 *
 * Checked on the URL as written (the WHATWG parser has already turned `2130706433` or
 * `0x7f.1` into `127.0.0.1`). A DNS name that resolves to a private address is not caught
 * here: resolving would make the check racy anyway (see SECURITY.md).
 */

export interface AppUrlPolicy {
  /** Loopback and private addresses are allowed (dev mode, or the operator said so). */
  allowPrivate: boolean;
}

/**
 * What is wrong with `url` as an app URL under `policy`, or null when the executor may call it.
 * `subject` names the URL in the message ("the app URL", "the URL" of a `step.fetch`).
 */
export function appUrlProblem(url: string, policy: AppUrlPolicy, subject = "the app URL"): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `"${url}" is not a URL`;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return `${subject} must be http:// or https://, not ${parsed.protocol}`;
  }
  const kind = addressKind(parsed.hostname);
  if (kind === "link-local" || kind === "metadata") {
    return `${subject}'s host ${parsed.hostname} is a ${kind} address, which the executor never calls`;
  }
  if ((kind === "loopback" || kind === "private") && !policy.allowPrivate) {
    return (
      `${subject}'s host ${parsed.hostname} is a ${kind} address, which the executor calls only in dev mode ` +
      `or with STEPWISE_ALLOW_PRIVATE_APP_URLS=1 (or give the URL to the executor: stepwise start --app <url>)`
    );
  }
  return null;
}

type AddressKind = "public" | "loopback" | "private" | "link-local" | "metadata";

const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"]);
const INTERNAL_SUFFIXES = [".internal", ".local", ".localdomain", ".lan", ".home.arpa", ".svc", ".cluster.local"];

function addressKind(hostname: string): AddressKind {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  if (METADATA_HOSTS.has(host)) return "metadata";
  if (host === "localhost" || host.endsWith(".localhost")) return "loopback";
  // Names that only resolve inside a network: a single label (a container's name), and the
  // suffixes reserved or conventional for internal use.
  if (!host.includes(".") && !host.startsWith("[")) return "private";
  if (INTERNAL_SUFFIXES.some((suffix) => host.endsWith(suffix))) return "private";
  const v4 = ipv4(host);
  if (v4) return ipv4Kind(v4);
  if (host.startsWith("[") && host.endsWith("]")) return ipv6Kind(host.slice(1, -1));
  return "public";
}

function ipv4(host: string): number[] | null {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!match) return null;
  const octets = match.slice(1).map(Number);
  return octets.every((n) => n <= 255) ? octets : null;
}

function ipv4Kind([a, b, c, d]: number[]): AddressKind {
  if (a === 169 && b === 254) return c === 169 && d === 254 ? "metadata" : "link-local";
  if (a === 100 && b === 100 && c === 100 && d === 200) return "metadata"; // Alibaba Cloud
  if (a === 127 || a === 0) return "loopback";
  if (a === 10 || (a === 172 && b! >= 16 && b! <= 31) || (a === 192 && b === 168)) return "private";
  if (a === 100 && b! >= 64 && b! <= 127) return "private"; // carrier-grade NAT
  if (a === 192 && b === 0 && c === 0) return "private"; // IETF protocol assignments
  if (a === 198 && (b === 18 || b === 19)) return "private"; // benchmarking networks
  if (a! >= 224) return "private"; // multicast, reserved, broadcast
  return "public";
}

/**
 * Only global unicast (2000::/3) is public; inside it, 6to4 carries an IPv4 address that is
 * judged as such. Forms that embed an IPv4 address (mapped, compatible, SIIT, NAT64) are
 * judged by that address, since a gateway turns them into it.
 */
function ipv6Kind(address: string): AddressKind {
  const groups = expandIpv6(address);
  if (!groups) return "private"; // not an address this code can read: treat with suspicion
  const g = (i: number) => groups[i]!;
  const embedded = () => ipv4Kind([g(6) >> 8, g(6) & 0xff, g(7) >> 8, g(7) & 0xff]);
  const zeros = (from: number, to: number) => groups.slice(from, to).every((x) => x === 0);
  if (zeros(0, 7) && (g(7) === 0 || g(7) === 1)) return "loopback"; // :: and ::1
  if (zeros(0, 5) && g(5) === 0xffff) return embedded(); // ::ffff:a.b.c.d
  if (zeros(0, 4) && g(4) === 0xffff && g(5) === 0) return embedded(); // ::ffff:0:a.b.c.d (SIIT)
  if (zeros(0, 6)) return embedded(); // ::a.b.c.d (IPv4-compatible)
  if (g(0) === 0x64 && g(1) === 0xff9b) return zeros(2, 6) ? embedded() : "private"; // NAT64, and its local-use /48
  if (g(0) === 0xfd00 && g(1) === 0x0ec2 && zeros(2, 7) && g(7) === 0x254) return "metadata"; // AWS
  if ((g(0) & 0xffc0) === 0xfe80) return "link-local";
  if (g(0) === 0x2002) return ipv4Kind([g(1) >> 8, g(1) & 0xff, g(2) >> 8, g(2) & 0xff]); // 6to4
  if ((g(0) & 0xe000) !== 0x2000) return "private"; // unique-local, site-local, multicast, reserved
  return "public";
}

/** Eight 16-bit groups, or null. The URL parser has already normalised the address (lower case, `::`, hex). */
function expandIpv6(address: string): number[] | null {
  const halves = address.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : Number.NaN)));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 0) return null;
  const groups = [...head, ...Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  return groups.some(Number.isNaN) ? null : groups;
}
