// The inferq dashboard. Plain JavaScript modules, no dependencies, no build step: it polls the
// API's JSON routes once a second and renders the models, charts, workers, running jobs, recent
// failures and dead letters.

import { ApiError, apiKey, request, api, saveApiKey, serverSecond } from "./api.js";
import { colourIndex, drawChart, latest, renderLegend, sample, WINDOW_SECONDS } from "./charts.js";
import { fetchDead, renderDead, setUpDeadLetters } from "./dead.js";
import { cells, clock, duration, el, jobCell, notice, rate, secondsSince, setText, syncRows } from "./dom.js";

const POLL_MS = 1000;
const LATE_HEARTBEAT_SECONDS = 5;
// The next poll, while one is scheduled; null while one is in flight.
let pollTimer = null;

function renderModels(queues) {
  const rows = Object.entries(queues.queues || {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, q]) => ({ name, ...q }));
  syncRows(
    document.getElementById("models"),
    rows,
    (m) => m.name,
    (m) => {
      const row = el("tr");
      row.dataset.model = m.name;
      const c = cells(row, 7);
      c[0].append(el("span", `swatch c${colourIndex(m.name)}`), el("span", "mono name"));
      const classes = ["depth", "running", "oldest", "completed", "throughput", "model-workers"];
      classes.forEach((cls, i) => (c[i + 1].className = `num ${cls}`));
      return row;
    },
    (row, m) => {
      const c = row.cells;
      setText(c[0].lastChild, m.name);
      setText(c[1], m.depth);
      setText(c[2], m.running);
      setText(c[3], m.depth > 0 ? duration(m.oldest_age_seconds) : "–");
      setText(c[4], m.completed_last_minute);
      setText(c[5], rate(latest(m.name)));
      setText(c[6], m.workers);
      c[6].classList.toggle("stale", m.workers === 0);
    },
  );
}

function renderWorkers(body) {
  const workers = [...(body.workers || [])].sort((a, b) => String(a.id).localeCompare(String(b.id)));
  syncRows(
    document.getElementById("workers"),
    workers,
    (w) => w.id,
    (w) => {
      const row = el("tr");
      row.dataset.worker = w.id;
      const c = cells(row, 10);
      c[0].className = "mono worker-id";
      c[2].className = "num";
      c[3].className = "mono";
      c[4].className = "mono models";
      c[5].append(el("meter"), el("span", "load"));
      c[6].className = "num succeeded";
      c[7].className = "num failed";
      c[9].className = "heartbeat";
      return row;
    },
    (row, w) => {
      const c = row.cells;
      setText(c[0], w.id);
      setText(c[1], w.host);
      setText(c[2], w.pid);
      setText(c[3], w.version);
      setText(c[4], (w.models || []).join(", "));
      const meter = c[5].firstChild;
      meter.max = Math.max(1, w.threads || 0);
      meter.value = w.busy || 0;
      setText(c[5].lastChild, `${w.busy} / ${w.threads}`);
      setText(c[6], w.jobs_succeeded);
      setText(c[7], w.jobs_failed);
      setText(c[8], duration(secondsSince(w.started_at)));
      c[8].title = w.started_at || "";
      const age = secondsSince(w.last_heartbeat);
      // Whole seconds: heartbeats come every second or two, milliseconds would only flicker.
      setText(c[9], age === null ? "–" : `${duration(Math.floor(age))} ago`);
      c[9].title = w.last_heartbeat || "";
      // Workers beat every 2 s and count as live for 10 s: 5 s is a late heartbeat.
      c[9].classList.toggle("stale", age !== null && age > LATE_HEARTBEAT_SECONDS);
    },
  );
}

function renderFailures(queues) {
  const failures = queues.recent_failures || [];
  syncRows(
    document.getElementById("failures"),
    failures,
    (f) => `${f.id}@${f.failed_at}`,
    (f) => {
      const row = el("tr");
      row.dataset.job = f.id || "";
      const c = cells(row, 5);
      c[2].className = "mono";
      c[3].className = "mono code";
      c[4].className = "message";
      return row;
    },
    (row, f) => {
      const c = row.cells;
      setText(c[0], clock(f.failed_at));
      c[0].title = f.failed_at || "";
      jobCell(c[1], f.id);
      setText(c[2], f.model);
      setText(c[3], f.code);
      setText(c[4], f.message);
    },
  );
}

// The newest running jobs (GET /jobs?status=running), at most 20.
function renderRunning(body) {
  syncRows(
    document.getElementById("running"),
    body.jobs || [],
    (j) => j.id,
    () => {
      const row = el("tr");
      const c = cells(row, 5);
      c[2].className = "mono";
      c[3].className = "num";
      return row;
    },
    (row, j) => {
      const c = row.cells;
      setText(c[0], clock(j.started_at));
      c[0].title = j.started_at || "";
      jobCell(c[1], j.id);
      setText(c[2], j.model);
      setText(c[3], j.attempts);
      setText(c[4], duration(secondsSince(j.started_at)));
    },
  );
}

function connection(ok, text) {
  const c = document.getElementById("connection");
  c.classList.toggle("ok", ok);
  c.classList.toggle("error", !ok);
  setText(c, text);
}

async function poll() {
  pollTimer = null;
  try {
    const [overview, workers, dead, running] = await Promise.all([
      request("/queues"),
      api("/workers"),
      fetchDead(),
      api("/jobs?status=running&limit=20"),
    ]);
    const queues = overview.body;
    sample(queues, serverSecond(overview.res));
    renderModels(queues);
    drawChart("chart-throughput", "done", (v) => (v > 0 && v < 10 ? v.toFixed(1) : String(Math.round(v))));
    // Whole jobs only: no "0.5 waiting" mid-axis label.
    drawChart("chart-depth", "depth", (v) => (Number.isInteger(v) ? String(v) : null));
    renderLegend(queues);
    renderWorkers(workers);
    renderRunning(running);
    renderFailures(queues);
    renderDead(queues, dead);
    showData(true);
    connection(true, `live · updated ${clock(new Date())}`);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      // No figures without a key that may see them: an empty table would say "no worker"
      // while workers run.
      showData(false, keyProblem(e));
      connection(false, "waiting for an API key");
    } else {
      connection(false, `not updating: ${e.message}`);
    }
  }
  if (pollTimer === null) pollTimer = setTimeout(poll, POLL_MS);
}

// Polls at once (after an action), keeping one poll in flight at most.
function pollNow() {
  if (pollTimer !== null) {
    clearTimeout(pollTimer);
    poll();
  }
}

// What is wrong with the key, in words: none given, not a valid one, or one without `admin`.
function keyProblem(e) {
  if (e.status === 403) {
    return `The saved key is valid but cannot open the dashboard: ${e.message}.`;
  }
  return apiKey()
    ? `The saved key was refused: ${e.message}.`
    : "This inferq API requires an API key, and none is saved in this browser.";
}

// Shows the figures, or hides them all and asks for a key (saying why).
function showData(ok, why = "") {
  document.getElementById("data").hidden = !ok;
  document.getElementById("key-needed").hidden = ok;
  if (!ok) document.getElementById("key-needed-why").textContent = why;
}

function setUpKeyPrompt() {
  const input = document.getElementById("key-needed-input");
  document.getElementById("key-needed-form").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      saveApiKey(input.value.trim());
      document.getElementById("api-key").value = input.value.trim();
      input.value = "";
    } catch {
      notice("This browser does not let the page store the key.", true);
    }
    pollNow();
  });
}

function setUpKeyField() {
  const input = document.getElementById("api-key");
  input.value = apiKey();
  document.getElementById("api-key-form").addEventListener("submit", (event) => {
    // Nothing is sent anywhere: the key stays in this browser (and the CSP forbids form
    // submission anyway).
    event.preventDefault();
    try {
      saveApiKey(input.value);
    } catch {
      notice("This browser does not let the page store the key.", true);
    }
    pollNow();
  });
}

document.getElementById("window-minutes").textContent = String(WINDOW_SECONDS / 60);

setUpKeyField();
setUpKeyPrompt();
setUpDeadLetters(pollNow);
poll();
