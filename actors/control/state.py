"""The controller's state, declared once: what `Controller` owns and its two halves (`scaling.PoolControl`,
`lifecycle.StreamLifecycle`) read and change.

`Controller.__init__` creates every attribute below and is its one owner; the halves add methods, never state
(the controller stays one object that Ray restarts and re-adopts as a whole). A new piece of controller state
is declared here first, with its lock, so each reader sees where it lives and what guards it.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.config import PipelineConfig
    from actors.control.alerts import AlertBook
    from actors.control.webhooks import WebhookSender
    from actors.control.autoscale import Autoscaler
    from actors.control.hosts import HostPool
    from actors.control.pools import ReplicaPool
    from actors.control.table import Table
    from actors.control.wiring import StreamActors, Wiring
    from actors.status import ScaleEvent


class ControllerState:
    """Typed declarations of the controller's state (no values: `Controller.__init__` sets them)."""

    config: PipelineConfig
    namespace: str  # the Ray namespace its actors and table live in
    # `_lock` guards `_streams` (short sections, never across a Ray call that waits); `_control` (re-entrant)
    # serialises every change to the pools and placement: reconcile rounds, scaling, moves.
    _lock: threading.Lock
    _control: threading.RLock
    _streams: dict[str, StreamActors | None]  # stream id -> its actors; None while it is being added
    wiring: Wiring  # reads `_streams` under `_lock`; owns the data plane's addresses (routes, placing)
    encoders: ReplicaPool
    llms: ReplicaPool
    hosts: HostPool  # stream hosts and their streams (its own lock; empty unless `streams_per_host` >= 1)
    autoscaler: Autoscaler
    table: Table  # the durable copy of the pools and streams, written by `_save`
    _events: collections.deque[ScaleEvent]  # the latest pool changes (bounded)
    _event_totals: dict[tuple[str, str], int]  # (role, action) -> events since this process began
    # alerts (actors/control/alert_control.py): the rule book (its own lock), the webhook sender, and, touched
    # only by the alert thread, each stream's owner replica and the drain calls still unanswered per replica
    alerts: AlertBook
    webhooks: WebhookSender
    _alert_owners: dict[str, str]
    _alert_drains: dict[str, Any]

    def _save(self) -> None:
        """Write the pools and streams to the durable table (Controller)."""
        raise NotImplementedError

    def _wire(self, full: bool | None = True) -> None:
        """Send actors their peers' addresses: all (True), or only what changed (None) (Controller)."""
        raise NotImplementedError
