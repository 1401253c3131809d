// The playground and dashboard served by `cutor serve` at / (docs/playground.md).

import { api, authorizedFetch, setToken, token, onTokenNeeded } from "./api.js";
import { watchSubmission, outputText } from "./events.js";
import { FileEditor } from "./editor.js";
import { parseMetrics, sum, stageHistograms, drawSparkline, drawBars } from "./metrics.js";

const $ = (id) => document.getElementById(id);
const STATUSES = ["QUEUED", "SETTING_UP_ENVIRONMENT", "BUILDING", "COMPILING", "RUNNING", "FINISHED"];
const RESULTS = ["OK", "ACCEPTED", "WRONG_ANSWER", "COMPILE_ERROR", "RUNTIME_ERROR", "TIME_LIMIT_EXCEEDED",
  "MEMORY_LIMIT_EXCEEDED", "OUTPUT_LIMIT_EXCEEDED", "ENVIRONMENT_ERROR", "BUILD_ERROR", "CHECKER_ERROR",
  "CANCELLED", "INTERNAL_ERROR"];
const STAGES = ["environment", "build", "compile", "run"];
const LIMIT_STAGES = ["environment", "compile", "run"];
const LIMITS = ["cpu_time_ms", "wall_time_ms", "memory_bytes", "processes", "output_bytes", "file_size_bytes"];
const STARTER = [
  ["cutor.nix", ""],
  ["compile.sh", ""],
  ["run.sh", "python3 main.py \"$@\"\n"],
  ["main.py", "import sys\nname = sys.stdin.readline().strip() or 'world'\nprint(f'hello, {name}', sys.argv[1:])\n"],
];

function element(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

function showError(id, error) {
  const p = $(id);
  p.hidden = !error;
  p.textContent = error ? String(error.message || error) : "";
}

// --- the token -------------------------------------------------------------------------

let tokenWaiters = [];
onTokenNeeded((reason) => new Promise((resolve) => {
  tokenWaiters.push(resolve);
  $("token-error").hidden = !reason;
  $("token-error").textContent = reason;
  if (!$("token-dialog").open) $("token-dialog").showModal();
  $("token-input").focus();
}));
$("token-form").addEventListener("submit", () => {
  setToken($("token-input").value.trim());
  $("token-input").value = "";
  $("forget-token").hidden = false;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  for (const resolve of waiters) resolve();
});
$("token-dialog").addEventListener("cancel", (e) => e.preventDefault());  // no token, no page
$("forget-token").hidden = !token();
$("forget-token").addEventListener("click", () => {
  setToken("");
  location.reload();
});

// --- views -------------------------------------------------------------------------------

let dashboardTimer = null;
function showView(name) {
  for (const b of document.querySelectorAll("#views button")) b.classList.toggle("active", b.dataset.view === name);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${name}`;
  clearInterval(dashboardTimer);
  dashboardTimer = null;
  if (name === "submissions") loadSubmissions(true);
  if (name === "dependencies") loadDependencies();
  if (name === "dashboard") {
    refreshDashboard();
    dashboardTimer = setInterval(refreshDashboard, 2000);
  }
}
for (const b of document.querySelectorAll("#views button")) b.addEventListener("click", () => showView(b.dataset.view));

// --- the playground ----------------------------------------------------------------------

const editor = new FileEditor($("file-tabs"), $("editor"));
editor.setFiles(STARTER);
let runtimes = [];
let watching = null;  // AbortController of the submission being watched
let currentId = null;

function buildLimitsTable() {
  const table = $("limits");
  table.append(element("tr", {}, element("th"), ...LIMIT_STAGES.map((s) => element("th", { textContent: s }))));
  for (const limit of LIMITS) {
    table.append(element("tr", {}, element("td", { textContent: limit }),
      ...LIMIT_STAGES.map((s) => element("td", {}, element("input", {
        type: "number", min: 1, id: `limit-${s}-${limit}`, ariaLabel: `${s} ${limit}` })))));
  }
}

function lines(text) {
  return text.split("\n").map((l) => l.replace(/\r$/, "")).filter((l) => l !== "");
}

function requestBody() {
  const files = editor.contents()
    .filter(([name, content]) => !(["cutor.nix", "compile.sh"].includes(name) && content.trim() === ""))
    .map(([name, content]) => ({ name, content }));
  const body = { files };
  if ($("stdin").value) body.stdin = $("stdin").value;
  const args = lines($("args").value);
  if (args.length) body.args = args;
  const env = {};
  for (const l of lines($("env").value)) {
    const eq = l.indexOf("=");
    if (eq < 1) throw new Error(`env: "${l}" is not KEY=VALUE`);
    env[l.slice(0, eq)] = l.slice(eq + 1);
  }
  if (Object.keys(env).length) body.env = env;
  const limits = {};
  for (const s of LIMIT_STAGES) for (const limit of LIMITS) {
    const v = $(`limit-${s}-${limit}`).value;
    if (v !== "") (limits[s] ||= {})[limit] = Number(v);
  }
  if (Object.keys(limits).length) body.limits = limits;
  return body;
}

function setStatus(status, result = "") {
  $("status").textContent = status;
  $("status").className = `badge ${status}`;
  $("result").textContent = result || "";
  $("result").className = `badge ${result || ""}`;
  $("result").hidden = !result;
}

function appendOutput(data) {
  const span = element("span", { textContent: outputText(data) });
  if (data.stream === "stderr") span.className = "stderr";
  $("output").append(span);
}

function stageBlock(name, st) {
  const facts = [`code ${st.code}`, st.signal ? `signal ${st.signal}` : null, `${st.wall_time_ms} ms wall`,
    `${st.cpu_time_ms} ms cpu`, `${Math.round(st.memory_bytes / 1024)} KiB`, st.truncated ? "truncated" : null]
    .filter(Boolean).join(" · ");
  const div = element("div", { className: "stage" },
    element("h4", {}, `${name} `, element("span", { className: `badge ${st.status}`, textContent: st.status })),
    element("div", { className: "muted", textContent: st.status === "PENDING" || st.status === "SKIPPED" ? "" : facts }));
  div.dataset.stage = name;
  if (st.stdout) div.append(element("div", { textContent: "stdout" }), element("pre", { className: "stdout", textContent: st.stdout }));
  if (st.stderr) div.append(element("div", { textContent: "stderr" }), element("pre", { className: "stderr", textContent: st.stderr }));
  return div;
}

function showSubmission(s) {
  currentId = s.id;
  setStatus(s.status, s.result);
  $("submission-id").textContent = `${s.id} · created ${s.created_at}${s.finished_at ? ` · finished ${s.finished_at}` : ""}`;
  const blocks = STAGES.map((name) => stageBlock(name, s[name]));
  for (const t of s.tests || []) {
    const b = stageBlock(`test ${t.name}`, t);
    b.querySelector("h4").append(" ", element("span", { className: `badge ${t.verdict}`, textContent: t.verdict }));
    if (t.checker_message) b.append(element("div", { className: "muted", textContent: t.checker_message }));
    blocks.push(b);
  }
  $("stages").replaceChildren(...blocks);
  $("cancel").disabled = s.status === "FINISHED";
}

async function watch(id) {
  if (watching) watching.abort();
  const controller = (watching = new AbortController());
  $("output").replaceChildren();
  $("stages").replaceChildren();
  $("cancel").disabled = false;
  currentId = id;
  try {
    await watchSubmission(id, {
      status: (status) => setStatus(status),
      output: appendOutput,
      finished: (s) => {
        showSubmission(s);
        if (!$("output").textContent) $("output").textContent = s.run.output;
      },
    }, controller.signal);
  } catch (e) {
    showError("run-error", e);
  }
}

$("run").addEventListener("click", async () => {
  showError("run-error", null);
  try {
    const answer = await api("POST", "/api/v1/submissions", requestBody());
    setStatus(answer.status);
    $("submission-id").textContent = answer.id;
    await watch(answer.id);
  } catch (e) {
    showError("run-error", e);
  }
});

$("cancel").addEventListener("click", async () => {
  if (!currentId) return;
  try {
    showSubmission(await api("DELETE", `/api/v1/submissions/${currentId}`));
  } catch (e) {
    showError("run-error", e);
  }
});

$("add-file").addEventListener("click", () => {
  const name = $("new-file-name").value.trim();
  if (!name) return;
  editor.add(name);
  $("new-file-name").value = "";
});
$("remove-file").addEventListener("click", () => editor.current && editor.remove(editor.current));

$("runtime").addEventListener("change", () => {
  const r = runtimes[Number($("runtime").value)];
  if (!r) return editor.setFiles(STARTER);
  // The runtime's files, editable: what is sent is what the editor shows.
  editor.setFiles([["cutor.nix", r.nix || ""], ["compile.sh", r.compile_sh || ""], ["run.sh", r.run_sh],
    [r.source_file, ""]]);
  editor.select(r.source_file);
});

async function loadRuntimes() {
  runtimes = (await api("GET", "/api/v1/runtimes")).runtimes;
  const select = $("runtime");
  runtimes.forEach((r, i) => select.append(element("option", { value: String(i), textContent: `${r.name} ${r.version}` })));
}

// --- submissions ---------------------------------------------------------------------------

let nextCursor = null;
async function loadSubmissions(first) {
  if (first) nextCursor = null;
  showError("submissions-error", null);
  const q = new URLSearchParams({ limit: $("filter-limit").value || "50" });
  if ($("filter-status").value) q.set("status", $("filter-status").value);
  if (!first && nextCursor) q.set("cursor", nextCursor);
  try {
    const page = await api("GET", `/api/v1/submissions?${q}`);
    nextCursor = page.next_cursor;
    $("submissions-next").disabled = !nextCursor;
    const wanted = $("filter-result").value;
    const rows = page.submissions.filter((s) => !wanted || s.result === wanted).map((s) => {
      const id = element("td", { className: "id", textContent: s.id });
      id.addEventListener("click", () => {
        showView("playground");
        $("output").textContent = s.run.output;
        showSubmission(s);
        if (s.status !== "FINISHED") watch(s.id);
      });
      return element("tr", {}, id, element("td", { textContent: s.status }), element("td", { textContent: s.result || "" }),
        element("td", { textContent: s.created_at }), element("td", { textContent: s.finished_at || "" }),
        element("td", { textContent: s.status === "FINISHED" ? `${s.run.wall_time_ms} ms` : "" }));
    });
    $("submissions-table").tBodies[0].replaceChildren(...rows);
  } catch (e) {
    showError("submissions-error", e);
  }
}
for (const s of STATUSES) $("filter-status").append(element("option", { value: s, textContent: s }));
for (const r of RESULTS) $("filter-result").append(element("option", { value: r, textContent: r }));
$("submissions-refresh").addEventListener("click", () => loadSubmissions(true));
$("submissions-next").addEventListener("click", () => loadSubmissions(false));
for (const id of ["filter-status", "filter-result"]) $(id).addEventListener("change", () => loadSubmissions(true));

// --- dependencies --------------------------------------------------------------------------

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function loadDependencies() {
  showError("dependencies-error", null);
  try {
    const { dependencies } = await api("GET", "/api/v1/dependencies");
    const rows = dependencies.map((d) => {
      const evict = element("button", { type: "button", textContent: "Evict", disabled: d.state === "evicting" });
      evict.className = "evict";
      evict.addEventListener("click", async () => {
        try {
          await api("DELETE", `/api/v1/dependencies/${encodeURIComponent(d.key)}`);
        } catch (e) {
          showError("dependencies-error", e);
        }
        loadDependencies();
      });
      const packages = d.packages.map((p) => `${p.name} ${p.version}`).join(", ");
      const row = element("tr", {}, element("td", { className: "key", textContent: d.key }),
        element("td", { className: "state", textContent: d.state + (d.error ? `: ${d.error}` : "") }),
        element("td", { textContent: packages }), element("td", { textContent: bytes(d.size_bytes) }),
        element("td", { textContent: d.last_used_at || "never" }), element("td", { textContent: String(d.use_count) }),
        element("td", {}, evict));
      row.dataset.key = d.key;
      return row;
    });
    $("dependencies-table").tBodies[0].replaceChildren(...rows);
  } catch (e) {
    showError("dependencies-error", e.code === "unavailable" ? "This server has no environment cache." : e);
  }
}
$("dependencies-refresh").addEventListener("click", loadDependencies);

// --- dashboard ----------------------------------------------------------------------------

const history = { queue: [], throughput: [], lastFinished: null, lastAt: null };
async function refreshDashboard() {
  try {
    const res = await authorizedFetch("/metrics");
    if (!res.ok) throw new Error(`/metrics: HTTP ${res.status}`);
    const samples = parseMetrics(await res.text());
    showError("dashboard-error", null);
    const depth = sum(samples, "cutor_queue_depth");
    const finished = sum(samples, "cutor_submissions", { status: "FINISHED" });
    const now = performance.now();
    if (history.lastAt !== null) {
      const rate = Math.max(0, finished - history.lastFinished) / ((now - history.lastAt) / 1000);
      history.throughput = [...history.throughput, rate].slice(-60);
      $("throughput").textContent = rate.toFixed(2);
    }
    history.lastFinished = finished;
    history.lastAt = now;
    history.queue = [...history.queue, depth].slice(-60);
    $("queue-depth").textContent = String(depth);
    $("running-now").textContent = String(sum(samples, "cutor_running_submissions"));
    drawSparkline($("queue-chart"), history.queue);
    drawSparkline($("throughput-chart"), history.throughput);
    const figures = Object.entries(stageHistograms(samples)).map(([stage, buckets]) => {
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 300 80");
      drawBars(svg, buckets);
      const total = buckets.reduce((a, b) => a + b.count, 0);
      const fig = element("figure", {}, element("figcaption", { textContent: `${stage} (${total})` }), svg);
      fig.dataset.stage = stage;
      return fig;
    });
    $("stage-histograms").replaceChildren(...figures);
  } catch (e) {
    showError("dashboard-error", e);
  }
}

// --- start ----------------------------------------------------------------------------------

buildLimitsTable();
(async () => {
  try {
    const info = await api("GET", "/api/v1/info");
    $("server-version").textContent = `cutor ${info.version}${info.auth ? " · token required" : ""}`;
    await loadRuntimes();
  } catch (e) {
    showError("run-error", e);
  }
  document.body.dataset.ready = "true";
})();
