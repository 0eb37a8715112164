// The Ask panel: one conversation per stream (kept while switching streams), answers streamed token by
// token from POST /v1/chat/completions, each with the span, snapshot version and time to first token.

import { ApiError, readEvents, request } from "./api.js";

const SUGGESTIONS = ["What is happening now?", "What moved recently?", "Describe the scene.",
  "What colours stand out?"];
const HISTORY_TURNS = 6; // earlier messages sent with a question (bounded: the prompt stays small)
const MAX_TOKENS = 128;

const $ = (id) => document.getElementById(id);

function item(role, text) {
  const li = document.createElement("li");
  li.className = `msg ${role}`;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  const meta = document.createElement("div");
  meta.className = "meta muted";
  li.append(body, meta);
  return li;
}

export class ChatPanel {
  constructor() {
    this.streamId = null;
    this.conversations = new Map(); // stream id -> [{role, content, meta, error}]
    this.busy = false;
    $("ask-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.ask($("question").value.trim());
    });
    const box = $("suggestions");
    for (const text of SUGGESTIONS) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "quiet suggestion";
      button.textContent = text;
      button.addEventListener("click", () => this.ask(text));
      box.append(button);
    }
    this.show(null);
  }

  /** Switch to stream `id`'s conversation (null: none). */
  show(id) {
    this.streamId = id;
    $("chat-name").textContent = id ? `· ${id}` : "";
    $("ask-button").disabled = !id || this.busy;
    $("question").disabled = !id;
    const log = $("chat-log");
    log.replaceChildren();
    for (const msg of this.conversations.get(id) || []) {
      const li = item(msg.role, msg.content);
      li.querySelector(".meta").textContent = msg.meta || "";
      if (msg.error) li.classList.add("error");
      log.append(li);
    }
  }

  forget(id) {
    this.conversations.delete(id);
    if (this.streamId === id) this.show(null);
  }

  async ask(question) {
    const id = this.streamId;
    if (!id || !question || this.busy) return;
    this.busy = true;
    $("ask-button").disabled = true;
    $("question").value = "";
    const conversation = this.conversations.get(id) || [];
    this.conversations.set(id, conversation);
    const history = conversation.filter((m) => !m.error).slice(-HISTORY_TURNS)
      .map(({ role, content }) => ({ role, content }));
    conversation.push({ role: "user", content: question });
    const answer = { role: "assistant", content: "", meta: "…" };
    conversation.push(answer);
    this.show(id);
    const node = $("chat-log").lastElementChild;
    const render = () => {
      if (this.streamId !== id) return; // the user switched streams: the conversation still fills in
      node.querySelector(".text").textContent = answer.content;
      node.querySelector(".meta").textContent = answer.meta;
      node.classList.toggle("error", Boolean(answer.error));
      node.classList.toggle("streaming", answer.meta === "…");
    };
    try {
      const response = await request("POST", "/v1/chat/completions", {
        stream: true, stream_id: id, max_tokens: MAX_TOKENS,
        messages: [...history, { role: "user", content: question }],
      });
      await readEvents(response, (_, data) => {
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk);
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) answer.content += choice.delta.content;
        }
        if (chunk.tokdyn) answer.meta = describe(chunk.tokdyn);
        render();
      });
    } catch (exc) {
      answer.error = true;
      answer.meta = exc.message;
    } finally {
      this.busy = false;
      if (answer.meta === "…") answer.meta = "";
      render();
      if (this.streamId) $("ask-button").disabled = false;
    }
  }
}

function describe(extra) {
  const span = extra.span || {};
  const parts = [`snapshot v${extra.snapshot_version}`,
    `media ${Number(span.t_start).toFixed(1)}–${Number(span.t_end).toFixed(1)} s`,
    `first token ${Number(extra.ttft_s).toFixed(2)} s`];
  return parts.join(" · ") + (extra.note ? ` — ${extra.note}` : "");
}
