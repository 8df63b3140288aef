// The dead letters' section: a page of them at a time, each with Retry and Discard.

import { ApiError, api } from "./api.js";
import { cells, clock, el, jobCell, notice, setText, syncRows } from "./dom.js";

const DEAD_LIMIT = 50;

// The dead letters' pages the operator went through: the cursor of each, the newest page's
// being null. The last one is shown (and polled); `nextDeadCursor` leads to an older one.
let deadCursors = [null];
let nextDeadCursor = null;

// Polls the page at once, after an action: set by `setUpDeadLetters`.
let refresh = () => {};

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
  refresh();
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

export function renderDead(queues, body) {
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
      const c = cells(row, 8);
      c[2].className = "tenant";
      c[3].className = "mono";
      c[4].className = "mono code";
      c[5].className = "message";
      c[6].className = "num";
      row.dataset.deadId = d.dead_id;
      const again = el("button", "retry", "Retry");
      again.type = "button";
      again.title = "Queue this job again";
      again.addEventListener("click", () => retry(d, c[7], again));
      const drop = el("button", "discard secondary", "Discard");
      drop.type = "button";
      drop.title = "Delete this dead letter";
      drop.addEventListener("click", () => discard(d, c[7], drop));
      const actions = el("div", "actions");
      actions.append(again, drop);
      c[7].append(actions, el("span", "code"));
      return row;
    },
    (row, d) => {
      const c = row.cells;
      setText(c[0], d.failed_at ? clock(d.failed_at) : "–");
      c[0].title = d.failed_at || "";
      jobCell(c[1], d.id);
      // The tenant that submitted the job (none for an unreadable entry).
      setText(c[2], d.tenant ?? "–");
      setText(c[3], d.model ?? "–");
      setText(c[4], d.error && d.error.code);
      setText(c[5], d.error && d.error.message);
      setText(c[6], d.attempts ?? "–");
      // Not for an unreadable entry, nor a job whose model was retired since.
      c[7].querySelector("button.retry").hidden = !retryable(d);
    },
  );
}

function deadQuery() {
  const cursor = deadCursors[deadCursors.length - 1];
  return `/dead?limit=${DEAD_LIMIT}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
}

// The page of dead letters being shown.
export function fetchDead() {
  return api(deadQuery()).catch((e) => {
    // An older page's cursor the API no longer takes: back to the newest page.
    if (!(e instanceof ApiError && e.status === 400 && deadCursors.length > 1)) throw e;
    deadCursors = [null];
    return api(deadQuery());
  });
}

// Wires the page buttons; `pollNow` polls at once (after an action or a page change).
export function setUpDeadLetters(pollNow) {
  refresh = pollNow;
  const go = (cursors) => {
    deadCursors = cursors;
    refresh();
  };
  document.getElementById("dead-newest").addEventListener("click", () => go([null]));
  document.getElementById("dead-newer").addEventListener("click", () => {
    if (deadCursors.length > 1) go(deadCursors.slice(0, -1));
  });
  document.getElementById("dead-older").addEventListener("click", () => {
    if (nextDeadCursor) go([...deadCursors, nextDeadCursor]);
  });
}
