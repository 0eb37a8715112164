// Live view of one stream: the newest sampled frame (refreshed at the stream's sample rate), the key map
// overlay toggle, hover / arrow keys over the key map cells naming the base token there and when it was
// first and last seen, and a timeline of the span the memory covers (one line per base token).

import { ApiError, getJSON, request } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const MIN_PERIOD_MS = 250; // never poll faster than 4 frames/s, whatever the sample rate
const MAX_PERIOD_MS = 2000;
const KEYMAP_RETRY_MS = 2000; // a stream without a key map (yet) is asked again this often

const $ = (id) => document.getElementById(id);

function seconds(t) {
  return `${Number(t).toFixed(1)} s`;
}

export class LiveView {
  constructor() {
    this.streamId = null;
    this.timer = null;
    this.keymap = null; // the key map JSON of the newest snapshot, or null
    this.keymapTried = 0; // Date.now() of the last key map request
    this.cell = null; // [row, col] under the pointer or the keyboard cursor
    this.objectUrl = null;
    this.busy = false;
    this.generation = 0; // bumps on every stream switch: late answers for the old stream are dropped
    $("overlay-toggle").addEventListener("change", () => this.refresh());
    const box = $("frame-box");
    box.addEventListener("mousemove", (event) => this.pointAt(event));
    box.addEventListener("mouseleave", () => this.setCell(null));
    box.addEventListener("keydown", (event) => this.key(event));
  }

  /** Show stream `id` (null: none); `status` gives its sample rate. */
  show(id, status) {
    this.generation += 1;
    clearInterval(this.timer);
    this.period = null;
    this.streamId = id;
    this.keymap = null;
    this.keymapTried = 0;
    this.setCell(null);
    $("live-name").textContent = id ? `· ${id}` : "";
    $("live-empty").hidden = Boolean(id);
    $("live-body").hidden = !id;
    if (!id) return;
    this.pace((status && status.sample_rate_hz) || 1);
    this.refresh();
  }

  /** Poll the frame at the stream's sample rate (within MIN/MAX_PERIOD_MS). */
  pace(rateHz) {
    const period = Math.min(MAX_PERIOD_MS, Math.max(MIN_PERIOD_MS, 1000 / rateHz));
    if (period === this.period) return;
    clearInterval(this.timer);
    this.period = period;
    this.timer = setInterval(() => this.refresh(), period);
  }

  async refresh() {
    if (!this.streamId || this.busy) return;
    this.busy = true;
    const generation = this.generation;
    const id = encodeURIComponent(this.streamId);
    const overlay = $("overlay-toggle").checked ? "keymap" : "none";
    try {
      const response = await request("GET", `/v1/streams/${id}/frame.jpg?overlay=${overlay}`);
      const blob = await response.blob();
      const version = response.headers.get("X-Tokdyn-Snapshot-Version");
      if (generation !== this.generation) return;
      if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = URL.createObjectURL(blob);
      $("frame").src = this.objectUrl;
      $("frame").dataset.frameT = response.headers.get("X-Tokdyn-Frame-T");
      $("frame-info").textContent = `frame at ${seconds(response.headers.get("X-Tokdyn-Frame-T"))} media time`;
      $("frame-note").textContent = "";
      const stale = this.keymap ? version && Number(version) !== this.keymap.version
        : Date.now() - this.keymapTried > KEYMAP_RETRY_MS;
      if (stale) await this.loadKeymap(generation);
    } catch (exc) {
      if (generation === this.generation) $("frame-note").textContent = exc.message;
    } finally {
      this.busy = false;
    }
  }

  async loadKeymap(generation) {
    this.keymapTried = Date.now();
    try {
      const keymap = await getJSON(`/v1/streams/${encodeURIComponent(this.streamId)}/keymap`);
      if (generation !== this.generation) return;
      this.keymap = keymap;
      this.drawTimeline();
      this.describeCell();
    } catch (exc) {
      if (!(exc instanceof ApiError) || generation !== this.generation) return;
      this.keymap = null;
      $("timeline").replaceChildren();
      $("timeline-info").textContent = exc.message;
    }
  }

  /** Called with each status of the shown stream: without the overlay the frame carries no snapshot
   * version, so a newer snapshot in the status is what triggers a fresh key map. */
  status(status) {
    if (status.sample_rate_hz) this.pace(status.sample_rate_hz);
    if (this.keymap && status.snapshot_version !== null && status.snapshot_version !== this.keymap.version
        && !$("overlay-toggle").checked) {
      this.loadKeymap(this.generation);
    }
  }

  pointAt(event) {
    if (!this.keymap) return;
    const rect = $("frame").getBoundingClientRect();
    const [h, w] = this.keymap.grid;
    const row = Math.floor(((event.clientY - rect.top) / rect.height) * h);
    const col = Math.floor(((event.clientX - rect.left) / rect.width) * w);
    this.setCell(row >= 0 && row < h && col >= 0 && col < w ? [row, col] : null);
  }

  key(event) {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (event.key === "Escape") return this.setCell(null);
    if (!moves[event.key] || !this.keymap) return;
    event.preventDefault();
    const [h, w] = this.keymap.grid;
    const [row, col] = this.cell || [Math.floor(h / 2), Math.floor(w / 2)];
    const [dr, dc] = this.cell ? moves[event.key] : [0, 0];
    this.setCell([Math.min(h - 1, Math.max(0, row + dr)), Math.min(w - 1, Math.max(0, col + dc))]);
  }

  setCell(cell) {
    this.cell = cell;
    this.describeCell();
  }

  describeCell() {
    const cursor = $("cell-cursor"), info = $("cell-info");
    if (!this.cell || !this.keymap) {
      cursor.hidden = true;
      info.textContent = "";
      this.highlight(null);
      return;
    }
    const [h, w] = this.keymap.grid;
    const [row, col] = this.cell;
    const id = this.keymap.ids[row][col];
    const token = this.keymap.tokens[id];
    Object.assign(cursor.style, { top: `${(row / h) * 100}%`, left: `${(col / w) * 100}%`,
      width: `${100 / w}%`, height: `${100 / h}%`, borderColor: this.keymap.colours[id] });
    cursor.hidden = false;
    info.textContent = `cell (${row}, ${col}): base token #${id}, first seen ${seconds(token.first_seen)}, `
      + `last seen ${seconds(token.last_seen)}`;
    info.style.borderLeftColor = this.keymap.colours[id];
    this.highlight(id);
  }

  drawTimeline() {
    const svg = $("timeline"), km = this.keymap;
    const k = km.tokens.length, rowH = 4, top = 14, width = 600;
    const span = Math.max(km.t_end - km.t_start, 1e-6);
    const x = (t) => ((t - km.t_start) / span) * width;
    svg.setAttribute("viewBox", `0 0 ${width} ${top + k * rowH + 2}`);
    const nodes = [];
    for (const [label, anchor, t] of [[seconds(km.t_start), "start", km.t_start], [seconds(km.t_end), "end", km.t_end]]) {
      const text = document.createElementNS(SVG, "text");
      Object.entries({ x: x(t), y: 10, "text-anchor": anchor, class: "axis" }).forEach(([a, v]) => text.setAttribute(a, v));
      text.textContent = label;
      nodes.push(text);
    }
    const now = document.createElementNS(SVG, "line");
    Object.entries({ x1: x(km.t), x2: x(km.t), y1: top - 2, y2: top + k * rowH, class: "now" })
      .forEach(([a, v]) => now.setAttribute(a, v));
    nodes.push(now);
    km.tokens.forEach((token, i) => {
      const line = document.createElementNS(SVG, "line");
      const y = top + i * rowH + rowH / 2;
      Object.entries({ x1: x(token.first_seen), x2: Math.max(x(token.last_seen), x(token.first_seen) + 2), y1: y,
        y2: y, stroke: km.colours[i], "data-token": i, class: "token" }).forEach(([a, v]) => line.setAttribute(a, v));
      nodes.push(line);
    });
    svg.replaceChildren(...nodes);
    $("timeline-info").textContent = `snapshot v${km.version}: ${k} base tokens cover ${seconds(km.t_start)} – `
      + `${seconds(km.t_end)} of media time`;
  }

  highlight(id) {
    for (const line of $("timeline").querySelectorAll("line.token")) {
      line.classList.toggle("dim", id !== null && Number(line.dataset.token) !== id);
    }
  }
}
