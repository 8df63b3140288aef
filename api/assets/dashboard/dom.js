// DOM helpers of the page: values from the API are only ever written as text (textContent),
// never as markup.

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function setText(e, text) {
  const s = text === undefined || text === null ? "" : String(text);
  if (e.textContent !== s) e.textContent = s;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (Number.isInteger(seconds) && seconds < 60) return `${seconds} s`;
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function secondsSince(rfc3339) {
  const t = Date.parse(rfc3339);
  return Number.isNaN(t) ? null : Math.max(0, (Date.now() - t) / 1000);
}

// Local wall-clock time, 24-hour; the full RFC 3339 timestamp goes in the cell's title.
export function clock(value) {
  const t = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(t.getTime())) return String(value || "–");
  return [t.getHours(), t.getMinutes(), t.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

export function rate(value) {
  if (value === null || value === undefined) return "–";
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} /s`;
}

// Keeps one `<tr>` per item in `tbody`, keyed by `key(item)`, in the items' order: rows are
// updated in place rather than rebuilt, so a button being clicked is never replaced under
// the pointer.
export function syncRows(table, items, key, build, update) {
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

export function cells(row, count) {
  for (let i = 0; i < count; i++) row.append(el("td"));
  return row.cells;
}

export function jobCell(cell, id) {
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

export function notice(text, isError = false) {
  const n = document.getElementById("notice");
  n.hidden = false;
  n.classList.toggle("error", isError);
  setText(n, text);
}
