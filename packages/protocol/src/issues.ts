/** Schema problems as one line: `path: message; path: message`, with `root` for the value itself. */
export function issuesText(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>, root: string): string {
  return issues.map((issue) => `${issue.path.map(String).join(".") || root}: ${issue.message}`).join("; ");
}
