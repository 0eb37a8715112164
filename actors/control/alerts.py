"""Alert rules and their firings: validation, the rising edge per rule, the retained event history.

`AlertBook` is a plain class (no Ray) that the controller owns (actors/control/alert_control.py). Its state
lives in two JSON documents of a `store` (actors/control/kv.py: in production Ray's GCS key-value store, next
to the pipeline table, so rules and events survive the controller's, the API's and every LLM replica's restart):

    rules:  {"format": 1, "next_rule": int, "rules": [Rule.to_doc(), ...]}
    events: {"format": 1, "next_event": int, "events": [event, ...]}   (the newest EVENTS_RETAINED)

Event ids are monotonic per deployment (the counter is stored with the events). Answers from LLM replicas
arrive as evaluation results; each rule takes an answer once per snapshot version (EdgeState), so two
replicas answering the same snapshot during an owner change never fire twice.
"""

from __future__ import annotations

import collections
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from actors.control.alert_edge import EdgeState
from actors.control.kv import Store
from actors.errors import AlertNotFound, StreamNotFound
from configs.schema import ConfigError
from stream.config import redact_url

FORMAT = 1
RULES_KEY = "tokdyn-alert-rules"
EVENTS_KEY = "tokdyn-alert-events"
EVENTS_RETAINED = 1000  # events kept for SSE resume (Last-Event-ID) and GET /v1/alerts/events
MAX_PROMPT_CHARS = 500
MAX_URL_CHARS = 2000
MAX_RULES = 1024
FIELDS = ("stream_id", "prompt", "min_consecutive", "cooldown_s", "webhook", "webhook_secret")
DEFAULT_COOLDOWN_S = 10.0


@dataclass
class Rule:
    """One rule, its edge state and its counters."""

    id: str
    stream_id: str
    prompt: str
    min_consecutive: int
    cooldown_s: float
    webhook: str | None
    webhook_secret: str | None
    created_at: float
    edge: EdgeState = field(default_factory=EdgeState)
    evaluations: int = 0
    firings: int = 0
    deliveries: int = 0
    delivery_failures: int = 0
    last_delivery_error: str | None = None
    last_evaluation: dict[str, Any] | None = None

    def to_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "edge"}
        return {**doc, "edge": self.edge.to_dict()}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Rule:
        return cls(**{**doc, "edge": EdgeState.from_dict(doc["edge"])})

    def public(self) -> dict[str, Any]:
        """What a client sees: no secret, the webhook URL redacted like stream URLs."""
        return {"id": self.id, "object": "alert", "stream_id": self.stream_id, "prompt": self.prompt,
                "min_consecutive": self.min_consecutive, "cooldown_s": self.cooldown_s,
                "webhook": None if self.webhook is None else redact_url(self.webhook), "created_at": self.created_at,
                "state": "firing" if not self.edge.armed else "idle", "streak": self.edge.streak,
                "last_fired_t": self.edge.fired_t, "last_evaluation": self.last_evaluation,
                "counts": {"evaluations": self.evaluations, "firings": self.firings, "deliveries": self.deliveries,
                           "delivery_failures": self.delivery_failures},
                "last_delivery_error": self.last_delivery_error}


def _field(doc: dict[str, Any], name: str, types: type | tuple[type, ...], default: Any) -> Any:
    value = doc.get(name, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, types):
        raise ConfigError(f"{name}: expected {getattr(types, '__name__', 'a number')}, got {value!r:.80}")
    return value


def validate(doc: Any, streams: list[str]) -> dict[str, Any]:
    """A POST /v1/alerts body -> the rule's fields; ConfigError("<field>: expected ..., got ...") for a bad
    one, StreamNotFound for a stream the pipeline does not have. Checks everything before anything changes."""
    if not isinstance(doc, dict):
        raise ConfigError(f"body: expected a JSON object with {list(FIELDS)}, got {type(doc).__name__}")
    for name in doc:
        if name not in FIELDS:
            raise ConfigError(f"{name}: unknown field, expected one of {list(FIELDS)}")
    stream_id = doc.get("stream_id")
    if not isinstance(stream_id, str) or not stream_id:
        raise ConfigError(f"stream_id: expected a stream id string, got {stream_id!r:.80}")
    prompt = doc.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"prompt: expected a non-empty yes/no question, got {prompt!r:.80}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ConfigError(f"prompt: expected at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    min_consecutive = _field(doc, "min_consecutive", int, 1)
    if not 1 <= min_consecutive <= 100:
        raise ConfigError(f"min_consecutive: expected an integer in [1, 100], got {min_consecutive}")
    cooldown_s = float(_field(doc, "cooldown_s", (int, float), DEFAULT_COOLDOWN_S))
    if not 0.0 <= cooldown_s <= 86400.0:
        raise ConfigError(f"cooldown_s: expected media seconds in [0, 86400], got {cooldown_s}")
    webhook = _field(doc, "webhook", str, None)
    if webhook is not None:
        parts = urlsplit(webhook) if len(webhook) <= MAX_URL_CHARS else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook: expected an http(s) URL of at most {MAX_URL_CHARS} characters, got "
                              f"{redact_url(webhook)[:80]!r}")
    secret = _field(doc, "webhook_secret", str, None)
    if secret is not None and not 16 <= len(secret) <= 256:
        raise ConfigError(f"webhook_secret: expected 16 to 256 characters, got {len(secret)}")
    if secret is not None and webhook is None:
        raise ConfigError("webhook_secret: expected only with a webhook, got no webhook")
    if stream_id not in streams:
        raise StreamNotFound(f"stream {stream_id!r}: expected one of {streams}")
    return {"stream_id": stream_id, "prompt": prompt.strip(), "min_consecutive": min_consecutive,
            "cooldown_s": cooldown_s, "webhook": webhook, "webhook_secret": secret}


class AlertBook:
    """Rules, their edge state and the retained events over a `store`. Thread-safe (one lock, short sections)."""

    def __init__(self, store: Store, retained: int = EVENTS_RETAINED) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.rules: dict[str, Rule] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=retained)
        self.next_rule = 0
        self.next_event = 0
        self.totals = {"evaluations": 0, "firings": 0, "skipped_snapshots": 0, "deliveries": 0,
                       "delivery_failures": 0, "evaluation_seconds_sum": 0.0, "evaluated_snapshots": 0}
        self._load()

    # --- the durable documents ------------------------------------------------------------------------

    def _load(self) -> None:
        rules, events = self._store.get(RULES_KEY), self._store.get(EVENTS_KEY)
        if rules is not None:
            doc = json.loads(rules)
            self.next_rule = int(doc["next_rule"])
            self.rules = {r["id"]: Rule.from_doc(r) for r in doc["rules"]}
        if events is not None:
            doc = json.loads(events)
            self.next_event = int(doc["next_event"])
            self.events.extend(doc["events"])

    def _save_rules(self) -> None:
        doc = {"format": FORMAT, "next_rule": self.next_rule, "rules": [r.to_doc() for r in self.rules.values()]}
        self._store.put(RULES_KEY, json.dumps(doc).encode())

    def _save_events(self) -> None:
        doc = {"format": FORMAT, "next_event": self.next_event, "events": list(self.events)}
        self._store.put(EVENTS_KEY, json.dumps(doc).encode())

    # --- rules ----------------------------------------------------------------------------------------

    def add(self, doc: Any, streams: list[str]) -> dict[str, Any]:
        """Validate and store a rule; returns its public view, plus its webhook secret once (if it has a
        webhook: generated when not given). Raises ConfigError / StreamNotFound, with nothing changed."""
        fields = validate(doc, streams)
        with self._lock:
            if len(self.rules) >= MAX_RULES:
                raise ConfigError(f"stream_id: expected at most {MAX_RULES} rules in the pipeline, got that many")
            if fields["webhook"] is not None and fields["webhook_secret"] is None:
                fields["webhook_secret"] = secrets.token_urlsafe(24)
            self.next_rule += 1
            rule = Rule(id=f"alert-{self.next_rule}", created_at=time.time(), **fields)
            self.rules[rule.id] = rule
            self._save_rules()
            out = rule.public()
        if rule.webhook_secret is not None:
            out["webhook_secret"] = rule.webhook_secret  # shown once: verify signatures with it
        return out

    def get(self, rule_id: str) -> dict[str, Any]:
        with self._lock:
            return self._rule(rule_id).public()

    def test_event(self, rule_id: str) -> tuple[str, str, dict[str, Any]]:
        """(webhook URL, secret, event) for a test delivery of a rule: a firing's fields, marked `"test": true`,
        with an id of its own ("test-..."), so a receiver can check its signature without waiting for a real
        firing. Nothing is recorded. Raises AlertNotFound, ConfigError (the rule has no webhook)."""
        with self._lock:
            rule = self._rule(rule_id)
            if rule.webhook is None:
                raise ConfigError(f"webhook: expected a rule with a webhook to test, {rule_id!r} has none")
            event = {"id": f"test-{secrets.token_hex(4)}", "test": True, "rule_id": rule.id,
                     "stream_id": rule.stream_id, "prompt": rule.prompt, "span": None, "snapshot_version": None,
                     "fired_at": time.time(), "evidence": f"/v1/streams/{rule.stream_id}/frame.jpg?overlay=keymap"}
            return rule.webhook, rule.webhook_secret or "", event

    def _rule(self, rule_id: str) -> Rule:
        rule = self.rules.get(rule_id)
        if rule is None:
            raise AlertNotFound(f"alert {rule_id!r}: expected one of {sorted(self.rules)[:20]}")
        return rule

    def list(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r.public() for r in self.rules.values() if stream_id in (None, r.stream_id)]

    def delete(self, rule_id: str) -> None:
        with self._lock:
            self._rule(rule_id)
            del self.rules[rule_id]
            self._save_rules()

    def remove_stream(self, stream_id: str) -> int:
        """Delete every rule of a removed stream; returns how many."""
        with self._lock:
            gone = [rid for rid, r in self.rules.items() if r.stream_id == stream_id]
            for rid in gone:
                del self.rules[rid]
            if gone:
                self._save_rules()
            return len(gone)

    def by_stream(self) -> dict[str, list[dict[str, str]]]:
        """Stream id -> [{"id", "prompt"}] of its rules, rule id order (what its owner replica evaluates)."""
        with self._lock:
            out: dict[str, list[dict[str, str]]] = {}
            for rule in sorted(self.rules.values(), key=lambda r: int(r.id.split("-")[1])):
                out.setdefault(rule.stream_id, []).append({"id": rule.id, "prompt": rule.prompt})
            return out

    # --- evaluations and events -----------------------------------------------------------------------

    def apply(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take evaluation results from LLM replicas: {"stream_id", "version", "t_start", "t_end", "answers":
        {rule id: [yes, margin]}, "skipped", "latency_s"}. Returns the new events (already stored)."""
        fired = []
        with self._lock:
            for result in sorted(results, key=lambda r: (r["stream_id"], r["version"])):
                fresh = False
                for rule_id, (yes, margin) in result["answers"].items():
                    rule = self.rules.get(rule_id)
                    if rule is None or rule.stream_id != result["stream_id"]:
                        continue  # deleted meanwhile
                    t_end = float(result["t_end"])
                    version = int(result["version"])
                    if version <= rule.edge.version:
                        continue  # a snapshot this rule already answered
                    fresh = True
                    rule.evaluations += 1
                    rule.last_evaluation = {"snapshot_version": version, "answer": "yes" if yes else "no",
                                            "margin": round(float(margin), 4), "t_end": t_end, "at": time.time()}
                    if rule.edge.step(bool(yes), version, t_end, rule.min_consecutive, rule.cooldown_s):
                        rule.firings += 1
                        fired.append(self._event(rule, result))
                if fresh:
                    self.totals["evaluations"] += len(result["answers"])
                    self.totals["skipped_snapshots"] += int(result.get("skipped", 0))
                    self.totals["evaluation_seconds_sum"] += float(result.get("latency_s", 0.0))
                    self.totals["evaluated_snapshots"] += 1
            self.totals["firings"] += len(fired)
            if results:
                self._save_rules()
            if fired:
                self._save_events()
        return fired

    def _event(self, rule: Rule, result: dict[str, Any]) -> dict[str, Any]:
        self.next_event += 1
        event = {"id": self.next_event, "rule_id": rule.id, "stream_id": rule.stream_id, "prompt": rule.prompt,
                 "span": {"t_start": float(result["t_start"]), "t_end": float(result["t_end"])},
                 "snapshot_version": int(result["version"]), "fired_at": time.time(),
                 "evidence": f"/v1/streams/{rule.stream_id}/frame.jpg?overlay=keymap",
                 "delivery": "pending" if rule.webhook else "none"}
        self.events.append(event)
        return event

    def events_after(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Retained events with id > `after`, oldest first, at most `limit` (without the delivery field)."""
        with self._lock:
            found = [e for e in self.events if e["id"] > after][:limit]
        return [{k: v for k, v in e.items() if k != "delivery"} for e in found]

    def pending_deliveries(self) -> list[tuple[dict[str, Any], str, str]]:
        """(event, webhook URL, secret) of retained events whose webhook delivery has not ended (a restart)."""
        with self._lock:
            out = []
            for event in self.events:
                rule = self.rules.get(event["rule_id"])
                if event.get("delivery") == "pending" and rule is not None and rule.webhook:
                    out.append((event, rule.webhook, rule.webhook_secret or ""))
            return out

    def webhook_of(self, rule_id: str) -> tuple[str, str] | None:
        with self._lock:
            rule = self.rules.get(rule_id)
            return None if rule is None or not rule.webhook else (rule.webhook, rule.webhook_secret or "")

    def delivered(self, event_id: int, rule_id: str, ok: bool, attempts: int, error: str | None) -> None:
        """Record a webhook delivery's outcome (after its retries): counters on the rule and in the totals."""
        with self._lock:
            for event in self.events:
                if event["id"] == event_id:
                    event["delivery"] = "delivered" if ok else "failed"
            failures = attempts - 1 if ok else attempts
            rule = self.rules.get(rule_id)
            if rule is not None:
                rule.deliveries += int(ok)
                rule.delivery_failures += failures
                if error is not None:
                    rule.last_delivery_error = error
                self._save_rules()
            self.totals["deliveries"] += int(ok)
            self.totals["delivery_failures"] += failures
            self._save_events()

    def clear(self) -> None:
        """Forget every rule and event (the pipeline's shutdown: its table goes too)."""
        with self._lock:
            self.rules.clear()
            self.events.clear()
            self._save_rules()
            self._save_events()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self.totals, "rules": len(self.rules), "retained_events": len(self.events),
                    "last_event_id": self.next_event}
