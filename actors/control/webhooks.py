"""Webhook delivery of alert events: signed, idempotent, retried with backoff, one sender thread per rule.

Each POST carries the event as JSON and the headers

    X-Tokdyn-Timestamp: unix seconds
    X-Tokdyn-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
    Idempotency-Key: tokdyn-alert-<event id>      (the same on every retry of one event)

A 2xx ends the delivery; anything else (another status, a refused connection, ATTEMPT_TIMEOUT_S without an
answer) is retried after BACKOFF_S doubling up to MAX_BACKOFF_S, MAX_ATTEMPTS tries in all. Every rule has its
own thread and bounded queue, so a receiver that never answers delays only its own rule's events. The outcome
(delivered or not, attempts) goes to `on_done`; an event not finished before a controller restart is still
"pending" in the durable table and is sent again then (at least once; the idempotency key lets the receiver
drop the duplicate).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from stream.config import redact_text

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_S = 5.0
BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
MAX_ATTEMPTS = 6
QUEUE_PER_RULE = 256  # events waiting per rule; beyond it the oldest waiting one is dropped (counted failed)

# (event id, rule id, delivered, attempts, the last failed attempt's error or None)
Done = Callable[[int, str, bool, int, "str | None"], None]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Tokdyn-Signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """Whether `header` is the signature of `body` at `timestamp` (a receiver's check; constant time)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def post_once(url: str, secret: str, event: dict[str, Any], timeout_s: float = ATTEMPT_TIMEOUT_S) -> str | None:
    """One signed POST of `event`; None on a 2xx, else what went wrong (redacted of `url`'s secrets)."""
    body = json.dumps(event, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Tokdyn-Timestamp": timestamp,
        "X-Tokdyn-Signature": signature(secret, timestamp, body), "Idempotency-Key": f"tokdyn-alert-{event['id']}",
        "User-Agent": "tokdyn-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (http(s) checked)
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return redact_text(f"{type(exc).__name__}: {reason}", url)[:200]


def send_test_event(rule_id: str, url: str, secret: str, event: dict[str, Any]) -> dict[str, Any]:
    """POST a rule's test event (AlertBook.test_event) once, now, with no retries, so whoever asked sees at
    once whether the receiver answers 2xx; the outcome {"id", "object", "delivered", "error"}."""
    error = post_once(url, secret, event)
    return {"id": rule_id, "object": "alert.test", "delivered": error is None, "error": error}


class WebhookSender:
    """Sends events to their rule's webhook in the background; `on_done` gets each delivery's outcome."""

    def __init__(self, on_done: Done, backoff_s: float = BACKOFF_S, max_attempts: int = MAX_ATTEMPTS,
                 timeout_s: float = ATTEMPT_TIMEOUT_S) -> None:
        self._on_done = on_done
        self.backoff_s, self.max_attempts, self.timeout_s = backoff_s, max_attempts, timeout_s
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue] = {}
        self._stop = threading.Event()

    def send(self, rule_id: str, url: str, secret: str, event: dict[str, Any]) -> None:
        """Queue `event` for `rule_id`'s webhook (returns at once)."""
        with self._lock:
            q = self._queues.get(rule_id)
            if q is None:
                q = self._queues[rule_id] = queue.Queue(QUEUE_PER_RULE)
                threading.Thread(target=self._run, args=(rule_id, q), name=f"webhook-{rule_id}",
                                 daemon=True).start()
        public = {k: v for k, v in event.items() if k != "delivery"}
        while True:
            try:
                q.put_nowait((url, secret, public))
                return
            except queue.Full:
                try:
                    dropped = q.get_nowait()[2]
                    self._on_done(dropped["id"], rule_id, False, 0, "dropped: the rule's delivery queue was full")
                except queue.Empty:
                    continue

    def _run(self, rule_id: str, q: queue.Queue) -> None:
        while not self._stop.is_set():
            try:
                url, secret, event = q.get(timeout=0.5)
            except queue.Empty:
                continue
            ok, failure, attempts, wait = False, None, 0, self.backoff_s
            while attempts < self.max_attempts and not self._stop.is_set():
                attempts += 1
                error = post_once(url, secret, event, self.timeout_s)
                if error is None:
                    ok = True
                    break
                failure = error
                log.warning("alert %s: webhook delivery of event %d failed (attempt %d): %s", rule_id, event["id"],
                            attempts, error)
                if attempts < self.max_attempts and self._stop.wait(wait):
                    break
                wait = min(wait * 2, MAX_BACKOFF_S)
            try:
                self._on_done(event["id"], rule_id, ok, attempts, failure)
            except Exception:  # the book is gone or broken: the sender must not die with it
                log.exception("alert %s: recording a delivery outcome failed", rule_id)

    def stop(self) -> None:
        self._stop.set()
