import { describe, expect, it } from "vitest";
import { printable } from "../src/log.ts";

describe("log lines", () => {
  it("print what senders chose with control characters escaped, so nothing forges a line or drives the terminal", () => {
    const forged = "run 01J ok\n12:00:00.000 run 01J completed";
    expect(printable(forged)).toBe("run 01J ok\\n12:00:00.000 run 01J completed");
    expect(printable("a\rb\u001b[31mc\u0000d\u2028e")).toBe("a\\rb\\u001b[31mc\\u0000d\\u2028e");
    expect(printable("tabs\tand é ✓ stay")).toBe("tabs\tand é ✓ stay");
    expect(printable("run \u202eevil")).toBe("run \\u202eevil");
  });
});
