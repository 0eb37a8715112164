"""The pipeline's control operations, declared once.

Each is a method of the controller actor (actors/control/controller.py and the parts it is composed of).
`PipelineClient` gets a blocking and an `_async` method per operation from this table (`with_operations`), and
the HTTP API's `RayBackend` forwards the Backend methods of the same names to the `_async` ones; so a new
operation is the controller's method, its line here, and (when HTTP serves it) its route and Backend line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CALL_TIMEOUT_S = 30.0  # a control call on a live pipeline answers well within this (status polls: ~10 ms)
# The controller waits for a new stream's actors to start (imports, on a busy 2-core machine: minutes);
# giving up sooner would report a failure for a stream that then appears anyway.
ADD_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Operation:
    """A controller method callable through the client: its name, what it does and raises (the client
    methods' docstring), and how long a call may take (None: the client's call timeout)."""

    name: str
    doc: str
    timeout_s: float | None = None


OPERATIONS = (
    # streams
    Operation("add_stream", "Start a stream from a StreamSpec dict; its StreamStatus. Raises ConfigError (bad "
              "spec), StreamExists.", ADD_TIMEOUT_S),
    Operation("list_streams", "Every stream's StreamStatus (with its telemetry)."),
    Operation("stream_status", "One stream's StreamStatus and telemetry. Raises StreamNotFound."),
    Operation("remove_stream", "Stop a stream and delete its memory and alert rules; how many rules went with it. "
              "Raises StreamNotFound."),
    Operation("stream_handles", "The stream's actor handles {'source', 'memory'} (tools and tests: pids, kills). "
              "Raises StreamNotFound."),
    # replica pools
    Operation("replicas", "Every encoder and LLM replica's ReplicaStatus (role, then name order)."),
    Operation("scale_events", "The pools' recent ScaleEvents (added, removed, streams re-assigned), oldest first."),
    Operation("scale_event_totals", "Pool changes since the controller process began, by (role, action) (a "
              "counter: 0 after a restart)."),
    Operation("scale", "Run `count` replicas of `role` ('encoder' | 'llm'); every ReplicaStatus after the change. "
              "Raises ConfigError (bad role or count), ScaleRefused (the cluster cannot host them).", ADD_TIMEOUT_S),
    Operation("assignments", "Stream id -> name of the encoder replica that serves it."),
    Operation("encoder_handles", "Every encoder replica's handle by name."),
    Operation("llm_handles", "Every live LLM replica's handle by name."),
    # alerts (actors/control/alerts.py has the rule and event shapes)
    Operation("add_alert", "Add a rule {'stream_id', 'prompt', 'min_consecutive'?, 'cooldown_s'?, 'webhook'?}; "
              "its view. Raises ConfigError naming the field, StreamNotFound."),
    Operation("list_alerts", "Every rule's view, or one stream's (stream_id)."),
    Operation("get_alert", "One rule's view: state, last evaluation, counts. Raises AlertNotFound."),
    Operation("delete_alert", "Delete a rule. Raises AlertNotFound."),
    Operation("test_alert", "Send a rule's webhook a signed test event now: {'id', 'object', 'delivered', 'error'}. "
              "Raises AlertNotFound, ConfigError (no webhook)."),
    Operation("alert_events", "Retained firings with id > `after`, oldest first, at most `limit`."),
    Operation("alert_stats", "Alert counters, the last event id, and which LLM replica owns each stream."),
)
BY_NAME = {op.name: op for op in OPERATIONS}


def with_operations(cls: type) -> type:
    """Class decorator: for each of OPERATIONS, `cls.<name>(*args)` and `cls.<name>_async(*args)` calling the
    controller through `self._get` / `self._get_async` (which turn Ray's errors into the pipeline's)."""
    for op in OPERATIONS:
        for name, method in ((op.name, _blocking(op)), (f"{op.name}_async", _awaitable(op))):
            if name in vars(cls):
                raise TypeError(f"{cls.__name__}.{name}: declared in actors/client/operations.py, not by hand")
            method.__name__, method.__qualname__, method.__doc__ = name, f"{cls.__name__}.{name}", op.doc
            setattr(cls, name, method)
    return cls


def _blocking(op: Operation):
    def call(self: Any, *args: Any) -> Any:
        return self._get(op.name, *args, timeout_s=op.timeout_s)
    return call


def _awaitable(op: Operation):
    async def call(self: Any, *args: Any) -> Any:
        return await self._get_async(op.name, *args, timeout_s=op.timeout_s)
    return call
