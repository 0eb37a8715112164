// Wires the console together: the API key prompt, the pipeline banner, the stream list (GET /v1/events),
// the selected stream's live view and status (GET /v1/streams/{id}/events), its chat, the replica pools, and
// the alert rules with their firings (GET /v1/alerts, /v1/alerts/events).

import { AlertPanel } from "./alerts.js";
import { apiKey, follow, setApiKey } from "./api.js";
import { ChatPanel } from "./chat.js";
import { LiveView } from "./live.js";
import { ReplicaPanel } from "./replicas.js";
import { StreamList, bindAddForm } from "./streams.js";

const $ = (id) => document.getElementById(id);

const live = new LiveView();
const chat = new ChatPanel();
const alerts = new AlertPanel();
const list = new StreamList(select, (id) => {
  chat.forget(id);
  if (list.selected === id) select(null);
});
let listFollow = null;
let streamFollow = null;
let firstList = true; // the add form starts open only when there is nothing to watch yet

function banner(text) {
  $("banner").textContent = text || "";
  $("banner").hidden = !text;
}

function outage(error) {
  if (error.status === 0) return "The tokdyn server cannot be reached; retrying by itself…";
  if (error.status === 503) return `The pipeline is unavailable right now; retrying by itself… (${error.message})`;
  return `The server answered ${error.status}: ${error.message}`;
}

function askForKey(message) {
  $("key-label").textContent = message;
  $("key-form").hidden = false;
  $("key-input").focus();
}

/** Follow the stream list; a 401 stops and asks for the key, anything else shows the banner and retries. */
function start() {
  if (listFollow) listFollow.abort();
  listFollow = new AbortController();
  follow("/v1/events", {
    event(name, data) {
      if (name === "error") return banner(outage({ status: 503, message: data.error.message }));
      banner(null);
      const gone = list.update(data.data);
      if (firstList) $("add-details").open = data.data.length === 0;
      firstList = false;
      if (gone.includes(list.selected)) select(null);
      else if (!list.selected && data.data.length) select(data.data[0].stream_id);
    },
    failure(error) {
      if (error.status === 401) {
        banner(null);
        askForKey(apiKey() ? "The server refused this API key. Enter the right one."
          : "This server needs an API key.");
        return true;
      }
      banner(outage(error));
      return false;
    },
  }, listFollow.signal);
}

function select(id) {
  if (streamFollow) streamFollow.abort();
  streamFollow = null;
  list.select(id);
  live.show(id, id ? list.status(id) : null);
  chat.show(id);
  history.replaceState(null, "", id ? `#stream=${encodeURIComponent(id)}` : location.pathname);
  if (!id) return;
  streamFollow = new AbortController();
  const controller = streamFollow;
  follow(`/v1/streams/${encodeURIComponent(id)}/events`, {
    event(name, data) {
      if (name === "status") live.status(data);
      else if (data.error && data.error.code === "stream_not_found") controller.abort();
    },
    failure(error) {
      return error.status >= 400 && error.status < 500; // gone or refused: the list shows why
    },
  }, controller.signal);
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey($("key-input").value.trim());
  $("key-input").value = "";
  $("key-form").hidden = true;
  start();
  alerts.start();
  if (list.selected) select(list.selected);
});

$("key-button").addEventListener("click", () => askForKey("API key for this server (this tab only)."));

bindAddForm((status) => select(status.stream_id));
new ReplicaPanel(); // polls GET /v1/replicas while its panel is open

const wanted = /^#stream=(.+)$/.exec(location.hash);
if (wanted) select(decodeURIComponent(wanted[1]));
start();
alerts.start();
