// The replica pools under the stream list (GET /v1/replicas, polled every 2 s while the panel is open and
// the tab is visible): each encoder and LLM replica's state, node, streams and load, and the latest scale
// events (added, removed, streams re-assigned or moved) with why they happened.

import { getJSON } from "./api.js";
import { el, fmt } from "./streams.js";

const POLL_MS = 2000;
const EVENTS_SHOWN = 8;
const $ = (id) => document.getElementById(id);

/** What a replica is doing: frames/s, batch fill and queue for an encoder; answers in flight for an LLM. */
function load(replica) {
  if (replica.role === "encoder") {
    const fill = replica.batch_fill === null ? "–" : fmt(replica.batch_fill * 100, 0, " %");
    return `${fmt(replica.frames_per_s, 1)} frames/s, batches ${fill} full, ${fmt(replica.queue_depth)} queued`;
  }
  return `${fmt(replica.answers_in_flight)} answering`;
}

function item(replica) {
  const li = el("li");
  li.dataset.replica = replica.name;
  const state = el("span", "state", replica.state);
  state.dataset.state = replica.state;
  const node = replica.node_id ? replica.node_id.slice(0, 8) : "–";
  const streams = `${replica.streams} stream${replica.streams === 1 ? "" : "s"}`;
  li.append(el("span", "name", replica.name), state,
    el("div", "muted", `${replica.role} · node ${node} · ${streams} · ${load(replica)}`));
  return li;
}

function event(e) {
  const when = new Date(e.at * 1000).toLocaleTimeString();
  return el("li", "", `${when} ${e.role} ${e.action} ${e.replica} (${e.replicas} now): ${e.reason}`);
}

export class ReplicaPanel {
  constructor() {
    this.details = $("replicas-details");
    this.timer = null;
    this.details.addEventListener("toggle", () => this.schedule(0));
    document.addEventListener("visibilitychange", () => this.schedule(0));
    this.schedule(0);
  }

  /** One pending refresh at most; none while the panel is closed or the tab hidden. */
  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.details.open && !document.hidden) this.timer = setTimeout(() => this.refresh(), ms);
  }

  async refresh() {
    try {
      const body = await getJSON("/v1/replicas");
      $("replica-list").replaceChildren(...body.data.map(item));
      const events = body.events.slice(-EVENTS_SHOWN).reverse(); // newest first
      $("scale-events").replaceChildren(...(events.length ? events.map(event)
        : [el("li", "muted", "none since the controller started")]));
      $("replicas-note").textContent = "";
    } catch (error) {
      $("replicas-note").textContent = `Replicas unavailable: ${error.message}`;
    }
    this.schedule(POLL_MS);
  }
}
