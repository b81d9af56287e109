/** The example's page: ask, watch the run, approve. Plain HTML and the SDK's realtime client. */
export const PAGE = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Stepwise research agent</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  input { width: 70%; padding: .4rem; } button { padding: .4rem .8rem; }
  #log { border-left: 3px solid #ccc; padding-left: .8rem; white-space: pre-wrap; }
  #approval[hidden] { display: none; }
</style>
<h1>Research agent</h1>
<form id="ask"><input name="topic" placeholder="What should the agent research?" required maxlength="200"> <button>Ask</button></form>
<p id="state"></p>
<div id="approval" hidden><p>The agent asks you to approve its findings:</p><ul id="findings"></ul>
  <button data-approved="true">Approve</button> <button data-approved="false">Reject</button></div>
<div id="log"></div>
<script type="module">
  import { subscribe } from "/realtime.js";
  const $ = (id) => document.getElementById(id);
  const log = (line) => ($("log").textContent += line + "\\n");
  let approvalUrl;
  $("ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("log").textContent = "";
    const started = await fetch("/ask", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ topic: new FormData(e.target).get("topic") }) }).then((r) => r.json());
    if (started.error) return ($("state").textContent = started.error);
    $("state").textContent = "run " + started.runId;
    const run = await subscribe(started.url, {
      onStep: (step) => log("step " + step.name + ": " + step.status),
      onMessage: ({ topic, data }) => {
        if (topic === "approval") {
          approvalUrl = data.url;
          $("findings").innerHTML = data.findings.map((f) => "<li>" + f.replace(/</g, "&lt;") + "</li>").join("");
          $("approval").hidden = false;
        } else log(topic + ": " + JSON.stringify(data));
      },
      onReconnect: (error) => log("(reconnecting: " + error.message + ")"),
    }).done;
    $("approval").hidden = true;
    $("state").textContent = "run " + run.id + " " + run.status + (run.output?.report ? ": " + run.output.report : run.output ? ": " + run.output.status : "");
  });
  // The callback URL needs no key: the page posts the decision to the executor itself.
  $("approval").addEventListener("click", async (e) => {
    const decision = e.target.dataset?.approved;
    if (!decision || !approvalUrl) return;
    await fetch(approvalUrl, { method: "POST", mode: "no-cors", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "approved=" + decision });
    $("approval").hidden = true;
  });
</script>
</html>
`;
