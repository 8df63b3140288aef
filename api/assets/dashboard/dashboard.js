// The inferq dashboard. Plain JavaScript, no dependencies, no build step: it polls the API's
// JSON routes once a second, keeps the last few minutes of figures in memory and draws its
// own charts (SVG). Every value from the API is written as text (textContent), never as markup.
"use strict";

(() => {
  const POLL_MS = 1000;
  const WINDOW_SECONDS = 300;
  // Seconds without a figure after which a chart's line breaks instead of bridging the gap.
  const GAP_SECONDS = 3;
  // The throughput column averages this many of the last whole seconds.
  const RATE_SECONDS = 10;
  const DEAD_LIMIT = 50;
  const LATE_HEARTBEAT_SECONDS = 5;
  const KEY_STORAGE = "inferq.apiKey";
  const PALETTE = ["#2f7ed8", "#e4572e", "#2bb673", "#9b59b6", "#f1a208", "#17a2b8", "#d81b60", "#7f8c8d"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  // Per model, two series keyed by whole second (Unix time): `done`, the jobs finished in that
  // second as the API counted them, and `depth`, the jobs waiting when the page polled.
  const series = new Map();
  // The API's current second at the last poll: the right edge of the charts.
  let nowSecond = Math.floor(Date.now() / 1000);
  // Models in order of first appearance: a model keeps its colour for the page's lifetime.
  const colours = new Map();
  let pollTimer = null;
  // The dead letters' pages the operator went through: the cursor of each, the newest page's
  // being null. The last one is shown (and polled); `nextDeadCursor` leads to an older one.
  let deadCursors = [null];
  let nextDeadCursor = null;

  // --- requests ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function apiKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return "";
    }
  }

  // Every request of the page goes through here, so a key (when the API has keys) is sent with
  // each one as `Authorization: Bearer`. Answers the body and the response.
  async function request(path, options = {}) {
    const headers = new Headers(options.headers || {});
    headers.set("Accept", "application/json");
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const res = await fetch(path, { ...options, headers, cache: "no-store" });
    let body = null;
    if (res.status !== 204) {
      body = await res.json().catch(() => null);
    }
    if (!res.ok) {
      const error = body && body.error;
      const message = typeof error === "string" ? error : (error && (error.message || error.code));
      throw new ApiError(res.status, message || `${res.status} ${res.statusText}`);
    }
    return { body, res };
  }

  async function api(path, options = {}) {
    return (await request(path, options)).body;
  }

  // The API's clock, to the second, from the response's `Date` header (the page's own clock
  // may be off): it places the API's per-second figures on the charts' time axis.
  function serverSecond(res) {
    const t = Date.parse(res.headers.get("Date") || "");
    return Number.isNaN(t) ? Math.floor(Date.now() / 1000) : Math.floor(t / 1000);
  }

  // --- formatting ----------------------------------------------------------------------------

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setText(e, text) {
    const s = text === undefined || text === null ? "" : String(text);
    if (e.textContent !== s) e.textContent = s;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
    if (Number.isInteger(seconds) && seconds < 60) return `${seconds} s`;
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const s = Math.floor(seconds);
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function secondsSince(rfc3339) {
    const t = Date.parse(rfc3339);
    return Number.isNaN(t) ? null : Math.max(0, (Date.now() - t) / 1000);
  }

  // Local wall-clock time, 24-hour; the full RFC 3339 timestamp goes in the cell's title.
  function clock(value) {
    const t = value instanceof Date ? value : new Date(value);
    if (Number.isNaN(t.getTime())) return String(value || "–");
    return [t.getHours(), t.getMinutes(), t.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function rate(value) {
    if (value === null || value === undefined) return "–";
    return `${value < 10 ? value.toFixed(1) : Math.round(value)} /s`;
  }

  function colourIndex(model) {
    if (!colours.has(model)) colours.set(model, colours.size % PALETTE.length);
    return colours.get(model);
  }

  // Keeps one `<tr>` per item in `tbody`, keyed by `key(item)`, in the items' order: rows are
  // updated in place rather than rebuilt, so a button being clicked is never replaced under
  // the pointer.
  function syncRows(table, items, key, build, update) {
    const tbody = table.tBodies[0];
    const existing = new Map();
    for (const row of tbody.rows) existing.set(row.dataset.key, row);
    let previous = null;
    for (const item of items) {
      const k = String(key(item));
      let row = existing.get(k);
      if (row) {
        existing.delete(k);
      } else {
        row = build(item);
        row.dataset.key = k;
      }
      update(row, item);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== wanted) tbody.insertBefore(row, wanted);
      previous = row;
    }
    for (const row of existing.values()) row.remove();
    const empty = document.querySelector(`[data-empty-for="${table.id}"]`);
    if (empty) empty.hidden = items.length > 0;
  }

  function cells(row, count) {
    for (let i = 0; i < count; i++) row.append(el("td"));
    return row.cells;
  }

  // --- models and charts ---------------------------------------------------------------------

  function seriesOf(model) {
    if (!series.has(model)) series.set(model, { done: new Map(), depth: new Map() });
    return series.get(model);
  }

  // Records one poll of `/queues`, answered in the API's second `second`.
  function sample(queues, second) {
    nowSecond = second;
    for (const [name, q] of Object.entries(queues.queues || {})) {
      colourIndex(name);
      const s = seriesOf(name);
      const perSecond = q.completed_per_second;
      if (Array.isArray(perSecond)) {
        // The last whole seconds before `second`, oldest first: a newer poll's figures replace
        // an older one's, so a second still being counted at one poll is right at the next.
        perSecond.forEach((n, i) => s.done.set(second - perSecond.length + i, n));
      } else if (typeof q.completed_last_minute === "number") {
        s.done.set(second - 1, q.completed_last_minute / 60);
      }
      if (typeof q.depth === "number") s.depth.set(second, q.depth);
    }
    for (const s of series.values()) {
      for (const m of [s.done, s.depth]) {
        for (const t of m.keys()) if (t < second - WINDOW_SECONDS) m.delete(t);
      }
    }
  }

  // Completed jobs per second over the last RATE_SECONDS whole seconds.
  function latest(model) {
    const s = series.get(model);
    if (!s || s.done.size === 0) return null;
    let sum = 0;
    for (let t = nowSecond - RATE_SECONDS; t < nowSecond; t++) sum += s.done.get(t) || 0;
    return sum / RATE_SECONDS;
  }

  // The busiest second of the charts' window.
  function peak(model) {
    const s = series.get(model);
    if (!s || s.done.size === 0) return null;
    return Math.max(...s.done.values());
  }

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

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // A round upper bound for the y axis: 1, 2, 5, 10, 20, 50, ...
  function niceMax(value) {
    if (!(value > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 5, 10]) if (m * p >= value) return m * p;
    return 10 * p;
  }

  function drawChart(id, field, format) {
    const chart = document.getElementById(id);
    const [W, H, left, right, top, bottom] = [600, 180, 44, 8, 8, 20];
    const from = nowSecond - WINDOW_SECONDS;
    const x = (t) => left + ((t - from) / WINDOW_SECONDS) * (W - left - right);
    let max = 0;
    for (const s of series.values()) for (const v of s[field].values()) max = Math.max(max, v);
    max = niceMax(max);
    const y = (v) => H - bottom - (v / max) * (H - top - bottom);
    const parts = [];
    for (const frac of [0, 0.5, 1]) {
      const gy = y(max * frac);
      parts.push(svg("line", { class: "grid", x1: left, x2: W - right, y1: gy, y2: gy }));
      const text = format(max * frac);
      if (text === null) continue;
      const label = svg("text", { class: "axis-label", x: left - 6, y: gy + 4, "text-anchor": "end" });
      label.textContent = text;
      parts.push(label);
    }
    for (const [t, text, anchor] of [
      [from, `−${WINDOW_SECONDS / 60} min`, "start"],
      [nowSecond, "now", "end"],
    ]) {
      const label = svg("text", { class: "axis-label", x: x(t), y: H - 4, "text-anchor": anchor });
      label.textContent = text;
      parts.push(label);
    }
    for (const [model, s] of series) {
      const points = [...s[field]].sort(([a], [b]) => a - b);
      let d = "";
      let lastT = null;
      for (const [t, v] of points) {
        const cmd = lastT === null || t - lastT > GAP_SECONDS ? "M" : "L";
        d += `${cmd}${x(t).toFixed(1)} ${y(v).toFixed(1)} `;
        lastT = t;
      }
      if (d) {
        const path = svg("path", { class: "series", d, stroke: PALETTE[colours.get(model)] });
        path.dataset.model = model;
        parts.push(path);
      }
    }
    chart.replaceChildren(...parts);
    chart.dataset.max = String(max);
  }

  function renderLegend(queues) {
    const names = [...colours.keys()].filter((m) => (queues.queues || {})[m] !== undefined);
    const legend = document.getElementById("legend");
    const items = names.map((name) => {
      const li = el("li");
      li.dataset.model = name;
      const p = peak(name);
      li.dataset.peak = String(p === null ? 0 : p);
      li.append(
        el("span", `swatch c${colours.get(name)}`),
        el("span", "mono", name),
        el("span", "figures", `last ${RATE_SECONDS} s ${rate(latest(name))}, peak ${rate(p)}`),
      );
      return li;
    });
    legend.replaceChildren(...items);
  }

  // --- workers, failures, dead letters -------------------------------------------------------

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

  function jobCell(cell, id) {
    if (!id) {
      setText(cell, "(unreadable entry)");
      return;
    }
    let a = cell.firstChild;
    if (!a || a.tagName !== "A") {
      a = el("a", "mono");
      cell.replaceChildren(a);
    }
    a.href = `/status/${encodeURIComponent(id)}`;
    setText(a, id);
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

  // The path that names a dead letter in `/dead/<id>` routes: its own entry id, which every
  // dead letter has (an unreadable entry has no job id).
  function deadPath(d) {
    return `/dead/${encodeURIComponent(d.dead_id)}`;
  }

  // Whether the API can run the dead letter's job again (older APIs do not say: a job id is
  // then the best guess).
  function retryable(d) {
    return typeof d.retryable === "boolean" ? d.retryable : Boolean(d.id);
  }

  function describe(d) {
    return d.id ? `job ${d.id}` : `unreadable entry ${d.dead_id}`;
  }

  // Runs one action on a dead letter from its row: both buttons stay disabled while it runs;
  // on success the row leaves at the next poll (at once), on failure the reason is shown.
  async function act(d, cell, button, busyLabel, run) {
    const buttons = [...cell.querySelectorAll("button")];
    const label = button.textContent;
    for (const b of buttons) b.disabled = true;
    setText(button, busyLabel);
    try {
      notice(await run());
      setText(cell.lastChild, "");
    } catch (e) {
      for (const b of buttons) b.disabled = false;
      setText(button, label);
      setText(cell.lastChild, e.message);
      notice(`${describe(d)}: ${e.message}`, true);
    }
    pollNow();
  }

  function retry(d, cell, button) {
    return act(d, cell, button, "Retrying…", async () => {
      const queued = await api(`${deadPath(d)}/retry`, { method: "POST" });
      return `Job ${queued.id} is queued again.`;
    });
  }

  function discard(d, cell, button) {
    if (!window.confirm(`Discard the dead letter of ${describe(d)}? It cannot be retried afterwards.`)) {
      return Promise.resolve();
    }
    return act(d, cell, button, "Discarding…", async () => {
      await api(deadPath(d), { method: "DELETE" });
      return `The dead letter of ${describe(d)} is discarded.`;
    });
  }

  function renderDead(queues, body) {
    const dead = body.dead_letters || [];
    const total = typeof queues.dead_letters === "number" ? queues.dead_letters : dead.length;
    setText(document.getElementById("dead-count"), total ? `(${total})` : "");
    nextDeadCursor = body.next_cursor || null;
    const page = deadCursors.length;
    document.getElementById("dead-pages").hidden = page === 1 && !nextDeadCursor;
    document.getElementById("dead-newest").disabled = page === 1;
    document.getElementById("dead-newer").disabled = page === 1;
    document.getElementById("dead-older").disabled = !nextDeadCursor;
    const first = (page - 1) * DEAD_LIMIT;
    setText(
      document.getElementById("dead-page"),
      dead.length ? `${first + 1}–${first + dead.length} of ${total}, newest first` : `page ${page}`,
    );
    syncRows(
      document.getElementById("dead"),
      dead,
      (d) => d.dead_id,
      (d) => {
        const row = el("tr");
        row.dataset.job = d.id || "";
        const c = cells(row, 7);
        c[2].className = "mono";
        c[3].className = "mono code";
        c[4].className = "message";
        c[5].className = "num";
        row.dataset.deadId = d.dead_id;
        const again = el("button", "retry", "Retry");
        again.type = "button";
        again.title = "Queue this job again";
        again.addEventListener("click", () => retry(d, c[6], again));
        const drop = el("button", "discard secondary", "Discard");
        drop.type = "button";
        drop.title = "Delete this dead letter";
        drop.addEventListener("click", () => discard(d, c[6], drop));
        const actions = el("div", "actions");
        actions.append(again, drop);
        c[6].append(actions, el("span", "code"));
        return row;
      },
      (row, d) => {
        const c = row.cells;
        setText(c[0], d.failed_at ? clock(d.failed_at) : "–");
        c[0].title = d.failed_at || "";
        jobCell(c[1], d.id);
        setText(c[2], d.model ?? "–");
        setText(c[3], d.error && d.error.code);
        setText(c[4], d.error && d.error.message);
        setText(c[5], d.attempts ?? "–");
        // Not for an unreadable entry, nor a job whose model was retired since.
        c[6].querySelector("button.retry").hidden = !retryable(d);
      },
    );
  }

  // --- the loop ------------------------------------------------------------------------------

  function notice(text, isError = false) {
    const n = document.getElementById("notice");
    n.hidden = false;
    n.classList.toggle("error", isError);
    setText(n, text);
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
      const [overview, workers, dead] = await Promise.all([
        request("/queues"),
        api("/workers"),
        api(deadQuery()).catch((e) => {
          // An older page's cursor the API no longer takes: back to the newest page.
          if (!(e instanceof ApiError && e.status === 400 && deadCursors.length > 1)) throw e;
          deadCursors = [null];
          return api(deadQuery());
        }),
      ]);
      const queues = overview.body;
      sample(queues, serverSecond(overview.res));
      renderModels(queues);
      drawChart("chart-throughput", "done", (v) => (v > 0 && v < 10 ? v.toFixed(1) : String(Math.round(v))));
      // Whole jobs only: no "0.5 waiting" mid-axis label.
      drawChart("chart-depth", "depth", (v) => (Number.isInteger(v) ? String(v) : null));
      renderLegend(queues);
      renderWorkers(workers);
      renderFailures(queues);
      renderDead(queues, dead);
      connection(true, `live · updated ${clock(new Date())}`);
    } catch (e) {
      const why = e instanceof ApiError && (e.status === 401 || e.status === 403)
        ? `${e.message} (set an API key)`
        : e.message;
      connection(false, `not updating: ${why}`);
    }
    if (pollTimer === null) pollTimer = setTimeout(poll, POLL_MS);
  }

  function deadQuery() {
    const cursor = deadCursors[deadCursors.length - 1];
    return `/dead?limit=${DEAD_LIMIT}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  }

  function setUpDeadPages() {
    const go = (cursors) => {
      deadCursors = cursors;
      pollNow();
    };
    document.getElementById("dead-newest").addEventListener("click", () => go([null]));
    document.getElementById("dead-newer").addEventListener("click", () => {
      if (deadCursors.length > 1) go(deadCursors.slice(0, -1));
    });
    document.getElementById("dead-older").addEventListener("click", () => {
      if (nextDeadCursor) go([...deadCursors, nextDeadCursor]);
    });
  }

  // Polls at once (after an action), keeping one poll in flight at most.
  function pollNow() {
    if (pollTimer !== null) {
      clearTimeout(pollTimer);
      poll();
    }
  }

  function setUpKeyField() {
    const input = document.getElementById("api-key");
    input.value = apiKey();
    document.getElementById("api-key-form").addEventListener("submit", (event) => {
      // Nothing is sent anywhere: the key stays in this browser (and the CSP forbids form
      // submission anyway).
      event.preventDefault();
      try {
        if (input.value) localStorage.setItem(KEY_STORAGE, input.value);
        else localStorage.removeItem(KEY_STORAGE);
      } catch {
        notice("This browser does not let the page store the key.", true);
      }
      pollNow();
    });
  }

  document.getElementById("window-minutes").textContent = String(WINDOW_SECONDS / 60);
  setUpKeyField();
  setUpDeadPages();
  poll();
})();
