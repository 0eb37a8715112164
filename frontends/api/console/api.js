// Talking to the tokdyn API from the page: the key (sessionStorage, sent as a bearer token, never a
// cookie), JSON requests, and server-sent events read through fetch (EventSource cannot send headers).

const KEY = "tokdyn.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** An error answer of the API ({"error": {message, type, param, code}}), or status 0 when unreachable. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || null;
    this.param = error.param || null;
  }
}

function headers(json) {
  const out = json ? { "Content-Type": "application/json" } : {};
  const key = apiKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

/** fetch with the key; JSON body when `body` is given; throws ApiError for anything but 2xx. */
export async function request(method, path, body, signal) {
  const options = { method, headers: headers(body !== undefined), cache: "no-store", signal };
  if (body !== undefined) options.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, options);
  } catch (exc) {
    if (signal && signal.aborted) throw exc;
    throw new ApiError(0, { error: { message: "the server cannot be reached", code: "unreachable" } });
  }
  if (!response.ok) {
    const parsed = await response.json().catch(() => null);
    throw new ApiError(response.status, parsed);
  }
  return response;
}

export async function getJSON(path) {
  return (await request("GET", path)).json();
}

/** Calls onEvent(name, data) for each server-sent event of `response` (name "message" when unnamed). */
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Follow an SSE route (a path, or a function returning one) until `signal` aborts, reconnecting with backoff
 * when the connection drops.
 * handlers: event(name, parsedData), failure(ApiError) (return true to stop following), open().
 */
export async function follow(path, handlers, signal) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      // a function is asked again on every reconnect (a resume point such as ?after=<last event id>)
      const response = await request("GET", typeof path === "function" ? path() : path, undefined, signal);
      delay = 1000;
      if (handlers.open) handlers.open();
      await readEvents(response, (name, data) => handlers.event(name, JSON.parse(data)));
    } catch (exc) {
      if (signal.aborted) return;
      const error = exc instanceof ApiError ? exc : new ApiError(0, { error: { message: "connection lost" } });
      if (handlers.failure && handlers.failure(error)) return;
    }
    await pause(delay, signal);
    delay = Math.min(delay * 2, 8000);
  }
}
