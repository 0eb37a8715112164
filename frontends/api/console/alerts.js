// The alerts panel: every stream's rules (GET /v1/alerts, polled every 2 s while the tab is visible and after
// each firing) with their state and counts, and the firings as they arrive (GET /v1/alerts/events, resumed
// after the last event id seen when the connection drops, so a reconnect shows nothing twice and loses
// nothing the server still retains).

import { follow, getJSON } from "./api.js";
import { el, fmt } from "./streams.js";

const POLL_MS = 2000;
const FIRINGS_SHOWN = 50;
const $ = (id) => document.getElementById(id);

function ruleItem(rule) {
  const li = el("li", "rule");
  li.dataset.ruleId = rule.id;
  const state = el("span", "state", rule.state);
  state.dataset.state = rule.state;
  const last = rule.last_evaluation;
  const answer = last ? `last answer ${last.answer} at ${fmt(last.t_end, 1, " s")}` : "not evaluated yet";
  const counts = `${rule.counts.evaluations} evaluations · ${rule.counts.firings} firings`;
  const failures = rule.counts.delivery_failures ? ` · ${rule.counts.delivery_failures} webhook failures` : "";
  li.append(el("span", "prompt", rule.prompt), state,
    el("div", "muted", `${rule.id} · ${answer} · ${counts}${failures}`));
  return li;
}

function firingItem(event) {
  const li = el("li", "firing");
  li.dataset.eventId = String(event.id);
  li.dataset.ruleId = event.rule_id;
  const when = new Date(event.fired_at * 1000).toLocaleTimeString();
  const span = `${fmt(event.span.t_start, 1)}–${fmt(event.span.t_end, 1)} s`;
  li.append(el("span", "name", event.stream_id), el("span", "prompt", event.prompt),
    el("div", "muted", `#${event.id} · ${when} · media ${span} · snapshot ${event.snapshot_version}`));
  return li;
}

export class AlertPanel {
  constructor() {
    this.timer = null;
    this.feed = null;
    this.after = 0; // the newest event id shown: the resume point
    document.addEventListener("visibilitychange", () => this.schedule(0));
  }

  /** (Re)start with the current key: rules polled, firings followed from where this page left off. */
  start() {
    if (this.feed) this.feed.abort();
    this.feed = new AbortController();
    const signal = this.feed.signal;
    follow(() => `/v1/alerts/events?after=${this.after}`, {
      event: (name, data) => {
        if (name === "alert") this.fired(data);
      },
      failure: (error) => error.status === 401, // the stream list asks for the key; start() runs again
    }, signal);
    this.schedule(0);
  }

  fired(event) {
    if (event.id <= this.after) return;
    this.after = event.id;
    const list = $("firing-list");
    list.prepend(firingItem(event)); // newest first
    while (list.children.length > FIRINGS_SHOWN) list.lastElementChild.remove();
    $("no-firings").hidden = true;
    this.schedule(0); // its rule's counts changed
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = null;
    if (!document.hidden) this.timer = setTimeout(() => this.refresh(), ms);
  }

  async refresh() {
    try {
      const body = await getJSON("/v1/alerts");
      const byStream = new Map();
      for (const rule of body.data) {
        if (!byStream.has(rule.stream_id)) byStream.set(rule.stream_id, []);
        byStream.get(rule.stream_id).push(rule);
      }
      const groups = [...byStream.keys()].sort().map((id) => {
        const group = el("li", "rule-group");
        group.dataset.streamId = id;
        const rules = el("ul", "rules");
        rules.append(...byStream.get(id).map(ruleItem));
        group.append(el("h3", "", id), rules);
        return group;
      });
      $("rule-list").replaceChildren(...groups);
      $("no-rules").hidden = groups.length > 0;
      $("alerts-note").textContent = "";
    } catch (error) {
      $("alerts-note").textContent = `Alert rules unavailable: ${error.message}`;
    }
    this.schedule(POLL_MS);
  }
}
