// The stream list (updated in place from GET /v1/events, so keyboard focus survives updates), per-stream
// sparklines, the add form (4xx messages next to the field they name) and removal with a confirmation.

import { ApiError, request } from "./api.js";

const HISTORY = 120; // sparkline points kept per stream (one per event, about 2 minutes)
const SVG = "http://www.w3.org/2000/svg";

const FIELDS = ["id", "url", "sample_rate_hz", "budget", "method", "live"];
// A 4xx names its field by `param` or by the start of its message ("stream.url: expected ..."); both are
// mapped to the form's field names.
const ALIASES = { stream_id: "id", k: "budget", k_max: "budget" };

export function fmt(value, digits = 0, unit = "") {
  if (value === null || value === undefined) return "–";
  return `${Number(value).toFixed(digits)}${unit}`;
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** SVG polyline points of `values` (nulls skipped) across a w x h box, scaled to [lo, hi]. */
function points(values, lo, hi, w, h) {
  const span = hi - lo || 1, step = w / Math.max(values.length - 1, 1);
  return values.map((v, i) => (v === null || v === undefined ? null
    : `${(i * step).toFixed(1)},${(h - 1 - ((v - lo) / span) * (h - 2)).toFixed(1)}`))
    .filter((p) => p !== null).join(" ");
}

function sparkline(label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 120 24");
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  return svg;
}

/** Draw `series` ([values, cssClass] pairs) on one shared scale (log10(1 + v) when `log`). */
function drawLines(svg, series, log) {
  const scaled = series.map(([values, cls]) => [values.map((v) => (v === null || v === undefined ? null
    : log ? Math.log10(1 + v) : v)), cls]);
  const real = scaled.flatMap(([values]) => values.filter((v) => v !== null));
  const lo = real.length ? Math.min(...real) : 0, hi = real.length ? Math.max(...real) : 1;
  svg.replaceChildren(...scaled.map(([values, cls]) => {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points(values, lo, hi, 120, 24));
    line.setAttribute("class", cls);
    return line;
  }));
}

export class StreamList {
  /** onSelect(id) when a stream is chosen; onRemoved(id) after it is deleted. */
  constructor(onSelect, onRemoved) {
    this.list = document.getElementById("stream-list");
    this.empty = document.getElementById("no-streams");
    this.onSelect = onSelect;
    this.onRemoved = onRemoved;
    this.rows = new Map(); // id -> {item, fields, sparks, history}
    this.selected = null;
  }

  /** Show `statuses` (the data of one `streams` event); returns the ids that disappeared. */
  update(statuses) {
    const gone = [];
    const seen = new Set();
    for (const status of statuses) {
      seen.add(status.stream_id);
      const row = this.rows.get(status.stream_id) || this.addRow(status.stream_id);
      this.fill(row, status);
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.item.remove();
        this.rows.delete(id);
        gone.push(id);
      }
    }
    this.empty.hidden = this.rows.size > 0;
    return gone;
  }

  select(id) {
    this.selected = id;
    for (const [rowId, row] of this.rows) row.item.classList.toggle("selected", rowId === id);
  }

  status(id) {
    const row = this.rows.get(id);
    return row ? row.status : null;
  }

  addRow(id) {
    const item = el("li", "stream");
    item.dataset.streamId = id;
    const head = el("div", "row");
    const pick = el("button", "pick", id);
    pick.type = "button";
    pick.setAttribute("aria-label", `show stream ${id}`);
    pick.addEventListener("click", () => this.onSelect(id));
    const state = el("span", "state");
    const remove = el("button", "remove quiet", "Remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `remove stream ${id}`);
    remove.addEventListener("click", () => this.remove(id));
    head.append(pick, state, remove);
    const url = el("div", "url muted");
    const figures = el("dl", "figures");
    const fields = { state, url };
    for (const [key, label] of [["lag", "lag"], ["frames", "frames in / sampled / dropped"],
      ["reconnects", "reconnects"], ["tokens", "tokens held / seen"], ["ratio", "compression"],
      ["version", "snapshot"]]) {
      figures.append(el("dt", "", label));
      fields[key] = figures.appendChild(el("dd"));
    }
    const sparks = { lag: sparkline(`lag of ${id}`), tokens: sparkline(`tokens held and seen of ${id}`) };
    const sparkRow = el("div", "row sparks");
    sparkRow.append(el("span", "muted", "lag"), sparks.lag, el("span", "muted", "held/seen"), sparks.tokens);
    item.append(head, url, figures, sparkRow);
    this.list.append(item);
    const row = { item, fields, sparks, history: { lag: [], held: [], seen: [] }, status: null };
    this.rows.set(id, row);
    if (id === this.selected) item.classList.add("selected");
    return row;
  }

  fill(row, s) {
    row.status = s;
    const f = row.fields;
    f.state.textContent = s.state;
    f.state.dataset.state = s.state;
    f.url.textContent = s.url; // redacted by the server
    f.url.title = s.last_error ? `last error: ${s.last_error}` : "";
    f.lag.textContent = fmt(s.lag_s, 2, " s");
    f.frames.textContent = `${fmt(s.frames_in)} / ${fmt(s.frames_sampled)} / ${fmt(s.dropped)}`;
    f.reconnects.textContent = fmt(s.reconnects);
    f.tokens.textContent = `${fmt(s.tokens_held)} / ${fmt(s.tokens_seen)}`;
    f.ratio.textContent = s.compression_ratio ? `${fmt(s.compression_ratio, 1)}×` : "–";
    f.version.textContent = s.snapshot_version === null ? "–" : `v${s.snapshot_version}`;
    const h = row.history;
    for (const [key, value] of [["lag", s.lag_s], ["held", s.tokens_held], ["seen", s.tokens_seen]]) {
      h[key].push(value);
      if (h[key].length > HISTORY) h[key].shift();
    }
    drawLines(row.sparks.lag, [[h.lag, "lag"]], false);
    // held and seen differ by orders of magnitude: one log scale shows both
    drawLines(row.sparks.tokens, [[h.seen, "seen"], [h.held, "held"]], true);
  }

  async remove(id) {
    if (!window.confirm(`Remove stream ${id}? Its memory is deleted.`)) return;
    try {
      await request("DELETE", `/v1/streams/${encodeURIComponent(id)}`);
      const row = this.rows.get(id);
      if (row) row.item.remove();
      this.rows.delete(id);
      this.empty.hidden = this.rows.size > 0;
      this.onRemoved(id);
    } catch (exc) {
      window.alert(`Could not remove ${id}: ${exc.message}`);
    }
  }
}

/** The add form: POST /v1/streams, errors shown next to the field they name. onAdded(status). */
export function bindAddForm(onAdded) {
  const form = document.getElementById("add-form");
  const errorFor = (name) => form.querySelector(`[data-error-for="${name}"]`);
  const clear = () => {
    for (const name of [...FIELDS, "form"]) errorFor(name).textContent = "";
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    const data = new FormData(form);
    const spec = { id: data.get("id").trim(), url: data.get("url").trim(), method: data.get("method"),
      sample_rate_hz: Number(data.get("sample_rate_hz")), budget: Number(data.get("budget")),
      loop: data.get("loop") === "on" };
    if (data.get("live")) spec.live = data.get("live") === "true";
    const button = document.getElementById("add-button");
    button.disabled = true;
    try {
      const status = await (await request("POST", "/v1/streams", spec)).json();
      form.reset();
      onAdded(status);
    } catch (exc) {
      showFieldError(form, errorFor, exc);
    } finally {
      button.disabled = false;
    }
  });
}

function fieldOf(exc) {
  const named = exc.param || (/^([\w.[\]]+):/.exec(exc.message) || [])[1] || "";
  const last = named.split(".").pop().replace(/\[\d+\]$/, "");
  const name = ALIASES[last] || last;
  return FIELDS.includes(name) ? name : "form";
}

function showFieldError(form, errorFor, exc) {
  const name = exc instanceof ApiError ? fieldOf(exc) : "form";
  errorFor(name).textContent = exc.message;
  const input = form.elements[name];
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}
