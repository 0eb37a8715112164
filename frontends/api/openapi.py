"""The OpenAPI 3 document of the HTTP API (`GET /openapi.json`), built from the app's own routes.

Each handler carries its operation next to it (`@operation(...)`: a summary, the request body's schema, the
responses' schemas), and `document(routes)` walks the routes the app really serves, so a new route shows up
in the document by itself (a route without `@operation` gets a generic entry). Response bodies of the
status types are derived from their dataclasses (actors/status.py), so the document cannot drift from them.
Every operation may also answer the OpenAI error shape (frontends/api/errors.py) as its `default`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from starlette.routing import Mount, Route

from actors.status import ReplicaStatus, ScaleEvent, StreamStatus

JSON = "application/json"
SSE = "text/event-stream"
VERSION = "1"

F = typing.TypeVar("F", bound=Callable[..., Any])


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_PRIMITIVES = {str: {"type": "string"}, bool: {"type": "boolean"}, int: {"type": "integer"},
               float: {"type": "number"}, Any: {}}


def type_schema(hint: Any) -> dict[str, Any]:
    """JSON schema (OpenAPI 3.0) of a type hint: primitives, X | None, list[X], dict[str, X]."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        schema = dict(type_schema(inner[0])) if len(inner) == 1 else {"anyOf": [type_schema(a) for a in inner]}
        return {**schema, "nullable": True} if type(None) in args else schema
    if typing.get_origin(hint) is list:
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if typing.get_origin(hint) is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1]) if args else {}}
    return dict(_PRIMITIVES[hint])


def dataclass_schema(cls: type) -> dict[str, Any]:
    """An object schema with every field of dataclass `cls` required (its `to_dict` always has every key)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return {"type": "object", "required": names, "properties": {n: type_schema(hints[n]) for n in names}}


def _list_of(name: str, **more: Any) -> dict[str, Any]:
    return {"type": "object", "required": ["object", "data", *more],
            "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": _ref(name)},
                           **more}}


_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_STRING_OR_NULL = {"type": "string", "nullable": True}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": _STRING_OR_NULL,
                       "code": _STRING_OR_NULL}}}},
    "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    "StreamStatus": dataclass_schema(StreamStatus),
    "StreamList": _list_of("StreamStatus"),
    "StreamSpec": {"type": "object", "required": ["id", "url"], "description": "actors.config.StreamSpec keys; "
                   "`id` for stream_id, `budget` and `method` go into `compressor`",
                   "properties": {"id": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"},
                                  "url": {"type": "string"}, "sample_rate_hz": {"type": "number"},
                                  "live": {"type": "boolean"}, "budget": {"type": "integer"},
                                  "method": {"type": "string"}}},
    "StreamDeleted": {"type": "object", "required": ["id", "object", "deleted", "alerts_removed"],
                      "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                                     "deleted": {"type": "boolean"}, "alerts_removed": {"type": "integer"}}},
    "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"],
              "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
                             "owned_by": {"type": "string"}}},
    "ModelList": _list_of("Model"),
    "ReplicaStatus": dataclass_schema(ReplicaStatus),
    "ScaleEvent": dataclass_schema(ScaleEvent),
    "ReplicaList": _list_of("ReplicaStatus"),
    "ReplicaListWithEvents": _list_of("ReplicaStatus", events={"type": "array", "items": _ref("ScaleEvent")}),
    "ScaleRequest": {"type": "object", "required": ["replicas"], "additionalProperties": False,
                     "properties": {"replicas": {"type": "integer", "minimum": 1}}},
    "ChatRequest": {"type": "object", "required": ["messages"], "description": "OpenAI chat completions; the "
                    "stream is named by a video_url part tokdyn://<stream_id> or the field stream_id",
                    "properties": {"messages": {"type": "array", "items": {
                        "type": "object", "required": ["role", "content"],
                        "properties": {"role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                                       "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}}},
                        "stream_id": {"type": "string"}, "model": {"type": "string"},
                        "max_tokens": {"type": "integer"}, "temperature": {"type": "number"},
                        "stream": {"type": "boolean"}, "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}},
    "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage", "tokdyn"],
                       "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
                                      "model": {"type": "string"}, "choices": {"type": "array", "items": {"type": "object"}},
                                      "usage": {"type": "object"}, "tokdyn": {"type": "object"}}},
    "KeyMap": {"type": "object", "required": ["version", "t", "grid", "ids", "tokens", "t_start", "t_end", "colours"],
               "properties": {"version": {"type": "integer"}, "t": {"type": "number"},
                              "grid": {"type": "array", "items": {"type": "integer"}},
                              "ids": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                              "tokens": {"type": "array", "items": {"type": "object"}},
                              "t_start": _NULLABLE_NUMBER, "t_end": _NULLABLE_NUMBER,
                              "colours": {"type": "array", "items": {"type": "string"}}}},
    "AlertSpec": {"type": "object", "required": ["stream_id", "prompt"],
                  "properties": {"stream_id": {"type": "string"}, "prompt": {"type": "string"},
                                 "min_consecutive": {"type": "integer"}, "cooldown_s": {"type": "number"},
                                 "webhook": {"type": "string"}, "webhook_secret": {"type": "string"}}},
    "Alert": {"type": "object", "required": ["id", "object", "stream_id", "prompt", "state"],
              "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "stream_id": {"type": "string"},
                             "prompt": {"type": "string"}, "state": {"type": "string"},
                             "min_consecutive": {"type": "integer"}, "cooldown_s": {"type": "number"},
                             "webhook": _STRING_OR_NULL, "counts": {"type": "object"}}},
    "AlertList": _list_of("Alert"),
    "AlertDeleted": {"type": "object", "required": ["id", "object", "deleted"],
                     "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "deleted": {"type": "boolean"}}},
    "AlertTest": {"type": "object", "required": ["id", "object", "delivered", "error"],
                  "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "delivered": {"type": "boolean"},
                                 "error": _STRING_OR_NULL}},
}


def operation(summary: str, *, body: str | None = None, responses: dict[int, str | dict[str, Any]] | None = None,
              query: dict[str, dict[str, Any]] | None = None, sse: bool = False) -> Callable[[F], F]:
    """Declare a handler's operation. `body`: the request's schema name (JSON); `responses`: status -> schema
    name (JSON) or a {media type: schema} map; `query`: parameter -> schema; `sse`: it answers an endless
    event stream (documented, but a fuzzer must not wait for its end)."""
    def mark(handler: F) -> F:
        handler.__openapi__ = {"summary": summary, "body": body, "responses": responses or {200: {}},  # type: ignore[attr-defined]
                               "query": query or {}, "sse": sse}
        return handler

    return mark


def _content(spec: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str):
        return {JSON: {"schema": _ref(spec)}}
    return {media: {"schema": schema} for media, schema in spec.items()} or {"*/*": {"schema": {}}}


def _operation(path: str, method: str, spec: dict[str, Any], secured: bool) -> dict[str, Any]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"{(\w+)}", path)]
    params += [{"name": name, "in": "query", "required": False, "schema": schema}
               for name, schema in spec["query"].items()]
    out: dict[str, Any] = {"operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_') or 'root'}",
                           "summary": spec["summary"], "parameters": params,
                           "responses": {str(status): {"description": str(status), "content": _content(schema)}
                                         for status, schema in spec["responses"].items()}}
    out["responses"]["default"] = {"description": "an error (OpenAI shape)", "content": _content("Error")}
    if spec["body"] is not None:
        out["requestBody"] = {"required": True, "content": _content(spec["body"])}
    if spec["sse"]:
        out["x-sse"] = True
    if not secured:
        out["security"] = []
    return out


def document(routes: Iterable[Route | Mount], open_paths: Iterable[str] = (), title: str = "tokdyn") -> dict[str, Any]:
    """The OpenAPI 3.0 document of `routes` (a route whose handler has no `@operation` gets a generic entry);
    paths in `open_paths` need no bearer token."""
    paths: dict[str, dict[str, Any]] = {}
    open_paths = set(open_paths)
    for route in routes:
        if isinstance(route, Mount):  # static files: any path under the mount
            spec = {"summary": f"static files under {route.path}/", "body": None, "query": {}, "sse": False,
                    "responses": {200: {"*/*": {}}}}
            paths[f"{route.path}/{{path}}"] = {"get": _operation(f"{route.path}/{{path}}", "get", spec, False)}
            continue
        spec = getattr(route.endpoint, "__openapi__", None) or {
            "summary": route.name, "body": None, "query": {}, "sse": False, "responses": {200: {}}}
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            paths.setdefault(route.path, {})[method.lower()] = _operation(
                route.path, method.lower(), spec, route.path not in open_paths)
    return {"openapi": "3.0.3", "info": {"title": title, "version": VERSION},
            "paths": paths, "components": {"schemas": SCHEMAS, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]}
