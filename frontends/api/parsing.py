"""Reading and validating request bodies: bounded JSON, chat completion requests, stream specs, scale requests.

Everything a client can get wrong is caught here and raised as a 4xx `ApiError` naming the field, so
handlers only see well-typed values and a bad request can never reach the pipeline (or become a 500).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from actors.config import MAX_REPLICAS
from actors.status import ROLES as REPLICA_ROLES
from frontends.api.errors import ApiError, invalid
from vlm.stops import MAX_STOP_CHARS, MAX_STOPS

# A chat request names its stream by a content part {"type": "video_url", "video_url": {"url": "tokdyn://ID"}}.
STREAM_SCHEME = "tokdyn://"
ROLES = ("system", "developer", "user", "assistant")
MAX_TOKENS_LIMIT = 4096
DEFAULT_MAX_TOKENS = 64


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body parsed as JSON, read chunk by chunk and refused past `max_bytes`.

    A declared Content-Length over the limit is refused before reading; a chunked body is counted as it
    arrives, so an endless upload costs at most `max_bytes` of memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > max_bytes:
            raise _too_large(len(body), max_bytes)
    if not body:
        raise ApiError(400, "expected a JSON body, got an empty one", code="invalid_json")
    try:
        value = json.loads(body)
    # RecursionError: deeply nested arrays ("[[[[...") exhaust the parser's stack; still the client's fault.
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"expected a JSON body, could not parse it: {exc}", code="invalid_json") from None
    check_text(value)
    return value


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: Any, where: str = "") -> None:
    """Refuse strings that are not Unicode text: JSON's \\ud800 escapes decode to lone surrogates, which no
    tokenizer, log line or UTF-8 encoder takes. 400 naming the field, before anything reaches the pipeline."""
    todo = [(where, value)]
    while todo:  # iterative: the parser already bounded the depth, this must not recurse into it again
        at, item = todo.pop()
        if isinstance(item, str) and not _is_text(item):
            first = next(i for i, c in enumerate(item) if 0xD800 <= ord(c) <= 0xDFFF)
            raise invalid(f"{at or 'body'}: expected Unicode text, got a lone surrogate (\\u{ord(item[first]):04x}) "
                          f"at character {first}", at or None, "invalid_text")
        elif isinstance(item, dict):
            for key, sub in item.items():
                todo.append((at, key))  # keys first, under the parent's name: a bad key must not be echoed
                named = key.isprintable() and _is_text(key)
                todo.append(((f"{at}.{key}" if at else key) if named else at, sub))
        elif isinstance(item, list):
            todo.extend((f"{at}[{i}]", v) for i, v in enumerate(item))


def _too_large(size: int, max_bytes: int) -> ApiError:
    return ApiError(413, f"request body too large: limit {max_bytes} bytes, got {size}+", code="body_too_large")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def expect_object(value: Any, param: str | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{param or 'body'}: expected a JSON object, got {_type_name(value)}", param, "invalid_type")
    return value


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{key}: expected a string, got {_type_name(value)}", key, "invalid_type")
    return value


def optional_int(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):  # JSON true is not a count
        raise invalid(f"{key}: expected an integer, got {_type_name(value)}", key, "invalid_type")
    if not low <= value <= high:
        raise invalid(f"{key}: expected {low}..{high}, got {value}", key)
    return value


def optional_number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{key}: expected a number, got {_type_name(value)}", key, "invalid_type")
    if not (math.isfinite(value) and low <= value <= high):  # Python's json accepts NaN and Infinity
        raise invalid(f"{key}: expected {low}..{high}, got {value}", key)
    return float(value)


def optional_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{key}: expected true or false, got {_type_name(value)}", key, "invalid_type")
    return value


@dataclass(frozen=True)
class ChatRequest:
    """A validated `POST /v1/chat/completions` request.

    messages: the conversation with every content flattened to text (``[{"role", "content": str}]``);
              the video_url parts that named the stream are removed.
    """

    stream_id: str
    messages: list[dict[str, str]]
    model: str | None
    max_tokens: int
    temperature: float
    stream: bool
    include_usage: bool
    stop: tuple[str, ...] = ()
    window: tuple[float, float] | None = None  # media seconds (t_start, t_end); None: the live memory


def parse_chat(body: Any) -> ChatRequest:
    """Validate an OpenAI chat completion body and find the stream it asks about.

    The stream is named by a ``video_url`` content part with URL ``tokdyn://<stream_id>`` (primary), or by
    the extra body field ``"stream_id"`` (``extra_body={"stream_id": ...}`` in the openai client). Both may
    be given if they agree. ``"stream"`` keeps its OpenAI meaning (stream the answer as SSE).
    """
    body = expect_object(body)
    raw_messages = body.get("messages")
    if raw_messages is None:
        raise invalid("messages: required, got nothing", "messages", "missing_field")
    if not isinstance(raw_messages, list):
        raise invalid(f"messages: expected a list, got {_type_name(raw_messages)}", "messages", "invalid_type")
    if not raw_messages:
        raise invalid("messages: expected at least one message, got an empty conversation", "messages",
                      "empty_conversation")
    named: set[str] = set()
    messages = [_parse_message(m, f"messages[{i}]", named) for i, m in enumerate(raw_messages)]
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise invalid("messages: expected the conversation to end with a user message that has text (the "
                      f"question), got a {messages[-1]['role']} message", "messages", "empty_conversation")
    extra = optional_str(body, "stream_id")
    if extra is not None:
        named.add(extra)
    if not named:
        raise invalid(
            f"expected the stream to ask about, as a content part {{'type': 'video_url', 'video_url': "
            f"{{'url': '{STREAM_SCHEME}<stream_id>'}}}} or the body field 'stream_id', got neither",
            "messages", "missing_stream")
    if len(named) > 1:
        raise invalid(f"expected one stream per question, got {sorted(named)}", "messages", "multiple_streams")
    optional_int(body, "n", 1, 1)  # only n=1: one choice per answer
    max_tokens = optional_int(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    if max_tokens is None:
        max_tokens = optional_int(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    temperature = optional_number(body, "temperature", 0.0, 2.0)
    options = body.get("stream_options")
    include_usage = bool(options is not None and optional_bool(expect_object(options, "stream_options"),
                                                               "include_usage"))
    return ChatRequest(
        stream_id=named.pop(),
        messages=messages,
        model=optional_str(body, "model"),
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        temperature=0.0 if temperature is None else temperature,
        stream=bool(optional_bool(body, "stream")),
        include_usage=include_usage,
        stop=parse_stop(body.get("stop")),
        window=parse_window(body.get("tokdyn")),
    )


# Largest media time a window may name (ten years, as the compressor's config bounds).
MAX_WINDOW_S = 10 * 365 * 86400.0


def parse_window(value: Any) -> tuple[float, float] | None:
    """The extra body field ``"tokdyn": {"window": {"t_start": s, "t_end": s}}`` (media seconds of the
    stream, 0 <= t_start <= t_end): answer about that window only. Absent: the live memory."""
    if value is None:
        return None
    window = expect_object(value, "tokdyn").get("window")
    if window is None:
        return None
    window = expect_object(window, "tokdyn.window")
    t_start = optional_number(window, "t_start", 0.0, MAX_WINDOW_S)
    t_end = optional_number(window, "t_end", 0.0, MAX_WINDOW_S)
    if t_start is None or t_end is None:
        raise invalid("tokdyn.window: expected both t_start and t_end (media seconds), got "
                      f"{sorted(k for k in ('t_start', 't_end') if window.get(k) is not None)}", "tokdyn.window",
                      "missing_field")
    if t_start > t_end:
        raise invalid(f"tokdyn.window: expected t_start <= t_end, got {t_start} > {t_end}", "tokdyn.window")
    return t_start, t_end


def parse_stop(value: Any) -> tuple[str, ...]:
    """OpenAI's `stop`: null, one string or a list of up to MAX_STOPS non-empty strings."""
    stops = [value] if isinstance(value, str) else value
    if stops is None:
        return ()
    if (not isinstance(stops, list) or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)):
        raise invalid(f"stop: expected a string or a list of up to {MAX_STOPS} non-empty strings of at most "
                      f"{MAX_STOP_CHARS} characters, got {_type_name(value)}", "stop")
    return tuple(stops)


def _parse_message(message: Any, where: str, named: set[str]) -> dict[str, str]:
    """One message -> {"role", "content": text}; stream ids named by video_url parts are added to `named`."""
    message = expect_object(message, where)
    role = message.get("role")
    if role not in ROLES:
        raise invalid(f"{where}.role: expected one of {list(ROLES)}, got {role!r}", f"{where}.role")
    role = "system" if role == "developer" else role  # OpenAI's newer name for system instructions
    content = message.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if content is None and role == "assistant":
        return {"role": role, "content": ""}
    if not isinstance(content, list):
        raise invalid(f"{where}.content: expected a string or a list of parts, got {_type_name(content)}",
                      f"{where}.content", "invalid_type")
    texts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        part = expect_object(part, at)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{at}.text: expected a string, got {_type_name(text)}", f"{at}.text", "invalid_type")
            texts.append(text)
        elif kind == "video_url":
            named.add(_stream_from_part(part, at))
        else:
            raise invalid(f"{at}.type: expected 'text' or 'video_url', got {kind!r}", f"{at}.type")
    return {"role": role, "content": "\n".join(texts)}


def _stream_from_part(part: dict[str, Any], at: str) -> str:
    video = part.get("video_url")
    url = video.get("url") if isinstance(video, dict) else video
    if not isinstance(url, str):
        raise invalid(f"{at}.video_url.url: expected a string, got {_type_name(url)}", f"{at}.video_url.url",
                      "invalid_type")
    if not url.startswith(STREAM_SCHEME) or len(url) == len(STREAM_SCHEME):
        raise invalid(f"{at}.video_url.url: expected '{STREAM_SCHEME}<stream_id>' (a stream added with "
                      f"POST /v1/streams), got {url[:80]!r}", f"{at}.video_url.url", "invalid_stream_url")
    return url[len(STREAM_SCHEME):]


# POST /v1/streams accepts StreamSpec keys plus two shortcuts for the compressor: "budget" and "method".
STREAM_SHORTCUTS = {"budget": "budget", "method": "method"}


def parse_stream_spec(body: Any) -> dict[str, Any]:
    """A POST /v1/streams body -> a StreamSpec dict (validated later by actors.config.stream_spec).

    ``id`` is accepted for ``stream_id``; ``budget`` and ``method`` go into ``compressor``.
    """
    spec = dict(expect_object(body))
    if "id" in spec:
        if "stream_id" in spec:
            raise invalid("id: give either 'id' or 'stream_id', got both", "id")
        spec["stream_id"] = spec.pop("id")
    if not isinstance(spec.get("stream_id"), str):
        raise invalid(f"id: expected a string, got {_type_name(spec.get('stream_id'))}", "id", "invalid_type")
    if not isinstance(spec.get("url"), str):
        raise invalid(f"url: expected a string, got {_type_name(spec.get('url'))}", "url", "invalid_type")
    compressor = dict(expect_object(spec.pop("compressor", {}), "compressor"))
    for key, field_name in STREAM_SHORTCUTS.items():
        if key in spec:
            if field_name in compressor:
                raise invalid(f"{key}: given twice (also compressor.{field_name})", key)
            compressor[field_name] = spec.pop(key)
    if compressor:
        spec["compressor"] = compressor
    return spec


def parse_replica_role(role: str) -> str:
    """The {role} of POST /v1/replicas/{role}: one of actors.status.ROLES."""
    if role not in REPLICA_ROLES:
        raise invalid(f"role: expected one of {list(REPLICA_ROLES)}, got {role[:40]!r}", "role")
    return role


def parse_replica_count(body: Any) -> int:
    """A POST /v1/replicas/{role} body ``{"replicas": N}`` -> N, an integer 1..MAX_REPLICAS."""
    body = expect_object(body)
    unknown = sorted(key for key in body if key != "replicas")
    if unknown:  # a misspelt key would otherwise read as "replicas missing"
        raise invalid(f"body: expected only the key 'replicas', got also {[key[:40] for key in unknown[:5]]}",
                      None, "unknown_field")
    count = optional_int(body, "replicas", 1, MAX_REPLICAS)
    if count is None:
        raise invalid(f"replicas: required (an integer 1..{MAX_REPLICAS}), got nothing", "replicas", "missing_field")
    return count
