"""tokdyn HTTP API: stream management and OpenAI-compatible chat over live streams, plus Prometheus metrics.

README section (the lead copies this into README.md)
====================================================

How it is served, and why
-------------------------
The API is a plain Starlette app (`actors.api.app.create_app(backend, config)`) served by uvicorn inside
**one Ray actor** (`actors.api.server.ApiActor`, `max_restarts=-1`, pinned to the node that starts it), not
by Ray Serve. Ray Serve would add a controller actor plus an HTTP proxy actor on every node (memory and CPU
we do not have on a 2-core laptop) and binds 0.0.0.0 by default; we want 127.0.0.1 by default, plain SSE
streaming and our own bearer-token auth, all of which a bare ASGI server gives directly. The actor stays a
thin shell: the app is a function over a `Backend` (actors/api/backend.py), tested in-process against a
real uvicorn server on 127.0.0.1, and `RayBackend` (actors/api/ray_backend.py) talks to the pipeline's
controller and LLM actors. If the actor dies, Ray restarts it on the same host and port.

Starting it (for `tokdyn serve`)::

    from actors.api.server import start_api
    handle, url = start_api(config.api, namespace=config.ray.namespace)   # controller found by its name

`config.api` is `actors.config.ApiConfig` (host 127.0.0.1, port, api_key, max_body_bytes). The controller
is looked up by name ("tokdyn-controller"), again after each restart; passing its handle instead works
too, but Ray then warns that the actor's constructor arguments live in the object store. Port 0 picks a
free port once, so a restarted actor comes back on the same URL. Listening on another interface means
setting `api.host` explicitly (e.g. the node's IP, or 0.0.0.0) and, then, an `api_key`.

Routes
------
With `api.api_key` set, every route but `/health` needs `Authorization: Bearer <api_key>` (else 401).

    GET    /health                liveness of the HTTP process        GET  /ready   200 when the pipeline answers
    POST   /v1/streams            {"id", "url", "sample_rate_hz", "budget", "method", ...} -> 201 + status
                                  (any StreamSpec key: frames_per_chunk, live, loop, compressor{...}, source{...})
    GET    /v1/streams            {"object": "list", "data": [status, ...]}
    GET    /v1/streams/{id}       status + telemetry (frames_in, frames_sampled, dropped, reconnects, lag_s,
                                  tokens_held, tokens_seen, compression_ratio, t_start, t_end, snapshot_version)
    DELETE /v1/streams/{id}       {"id", "object": "stream", "deleted": true}
    POST   /v1/chat/completions   OpenAI chat completions, `"stream": true` for server-sent events
    GET    /v1/models             OpenAI model list (the model that answers)
    GET    /metrics               Prometheus text format

Asking about a stream
---------------------
The stream is named by a message content part (primary convention, works with every OpenAI client)::

    {"type": "video_url", "video_url": {"url": "tokdyn://<stream_id>"}}

or by the extra body field `"stream_id"` (`extra_body={"stream_id": "cam"}` in the openai client); both
may be given if they agree. (`"stream"` keeps its OpenAI meaning: stream the answer.) The conversation must
end with a user message that has text: the question. Only `n=1`; `max_tokens` / `max_completion_tokens`
1..4096 (the model's `max_new_tokens` caps it further), `temperature` 0..2; other OpenAI fields are ignored.

Each answer is drawn from one snapshot of the stream's compact memory and says what it covers in an extra
top-level field (on the completion, and on the streamed chunk that carries `finish_reason`)::

    "tokdyn": {"stream_id": "cam", "span": {"t_start": 0.0, "t_end": 41.5}, "snapshot_version": 83,
               "ttft_s": 0.04, "note": "..."}      # span in media seconds; note only for random-weight models

`usage.prompt_tokens` counts every prefilled token, the visual ones included; `usage.visual_tokens` says
how many were visual. With `stream_options: {"include_usage": true}` a final `choices: []` chunk carries
`usage` as OpenAI sends it; the `finish_reason` chunk carries it always. Example::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)
    client.chat.completions.create(model="tiny-llava-onevision", messages=[{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "tokdyn://cam"}}, {"type": "text", "text": "Who enters?"}]}])

    curl -N http://127.0.0.1:8000/v1/chat/completions -H "Authorization: Bearer $KEY" \\
      -d '{"stream": true, "stream_id": "cam", "messages": [{"role": "user", "content": "Who enters?"}]}'

Errors
------
Always `{"error": {"message", "type", "param", "code"}}`. Client mistakes are 4xx: 400 malformed JSON
(`invalid_json`), wrong types or ranges (param names the field), empty conversation (`empty_conversation`),
no or several streams named, bad stream spec; 401 missing/wrong key; 404 unknown stream
(`stream_not_found`), model or route; 405; 409 duplicate stream (`stream_exists`) or a stream with no
snapshot yet (`stream_not_ready`, retry shortly); 413 body over `max_body_bytes` (counted while reading,
never buffered past the limit). Pipeline failures are 503 (`backend_unavailable`: actors restarting) or
500 (`backend_error`) in the same shape, and the server keeps serving. An error after a streamed answer
began arrives as one `data: {"error": ...}` event, without `data: [DONE]`.

Metrics
-------
Per stream (label `stream_id`): `tokdyn_stream_frames_in_total`, `_frames_sampled_total`,
`_frames_dropped_total`, `_reconnects_total`, `_tokens_seen_total`, `tokdyn_stream_lag_seconds`,
`_tokens_held`, `_compression_ratio`, `_snapshot_version`, `_media_seconds`, `tokdyn_stream_up{state}`;
read from the pipeline at scrape time, so a removed stream disappears. Per query (measured in the API):
histograms `tokdyn_query_latency_seconds` and `tokdyn_query_ttft_seconds`, counters
`tokdyn_queries_total{outcome}` and `tokdyn_query_tokens_total{kind=prompt|visual|completion}`.
"""
