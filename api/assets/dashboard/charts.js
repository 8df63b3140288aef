// The charts: per model, completed jobs per second and waiting jobs over the last few minutes,
// kept in memory from successive polls and drawn as SVG by the page itself.

import { el, rate } from "./dom.js";

export const WINDOW_SECONDS = 300;

// Seconds without a figure after which a chart's line breaks instead of bridging the gap.
const GAP_SECONDS = 3;

// The throughput column averages this many of the last whole seconds.
const RATE_SECONDS = 10;

const PALETTE = ["#2f7ed8", "#e4572e", "#2bb673", "#9b59b6", "#f1a208", "#17a2b8", "#d81b60", "#7f8c8d"];

const SVG_NS = "http://www.w3.org/2000/svg";

// Per model, two series keyed by whole second (Unix time): `done`, the jobs finished in that
// second as the API counted them, and `depth`, the jobs waiting when the page polled.
const series = new Map();

// The API's current second at the last poll: the right edge of the charts.
let nowSecond = Math.floor(Date.now() / 1000);

// Models in order of first appearance: a model keeps its colour for the page's lifetime.
const colours = new Map();

export function colourIndex(model) {
  if (!colours.has(model)) colours.set(model, colours.size % PALETTE.length);
  return colours.get(model);
}

function seriesOf(model) {
  if (!series.has(model)) series.set(model, { done: new Map(), depth: new Map() });
  return series.get(model);
}

// Records one poll of `/queues`, answered in the API's second `second`.
export function sample(queues, second) {
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
export function latest(model) {
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

export function drawChart(id, field, format) {
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

export function renderLegend(queues) {
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
