import { printable, time, type Logger } from "@stepwise/engine";

/**
 * Lines to stdout/stderr with a time prefix. Lines are gathered and written once per turn of
 * the event loop: on Linux a write to a pipe blocks, and one write per step cost more than a
 * database round trip under load.
 */
export const stdioLogger: Logger = (() => {
  const out: string[] = [];
  const err: string[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (out.length > 0) process.stdout.write(`${out.splice(0).join("\n")}\n`);
    if (err.length > 0) process.stderr.write(`${err.splice(0).join("\n")}\n`);
  };
  const push = (target: string[], line: string) => {
    target.push(line);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  process.once("exit", flush);
  return {
    info: (line) => push(out, `${time()} ${printable(line)}`),
    warn: (line) => push(err, `${time()} WARN ${printable(line)}`),
    error: (line) => push(err, `${time()} ERROR ${printable(line)}`),
  };
})();

