"""Prometheus metrics for `GET /metrics`: per-stream and per-replica telemetry, and per-query latency.

Stream and replica telemetry lives in the pipeline's actors, so it is read at scrape time (one stream list,
one replica list, the controller's scale event totals) and rendered as fresh metric families: nothing goes
stale after a stream or a replica is removed. Query metrics are measured here, in the API process, as
histograms in a registry owned by one app (so several apps in one process, as in the tests, do not collide).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from actors.status import ReplicaStatus, StreamStatus

PREFIX = "tokdyn"
# Seconds; a tiny CPU model answers in tens of ms, a real 0.5B model on CPU in seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# (metric name, StreamStatus field, kind, help). Counters read monotonic totals kept by the pipeline; a
# field that is None (an actor restarting, a stream still starting) is simply not reported.
STREAM_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("stream_frames_in", "frames_in", "counter", "Frames decoded from the source."),
    ("stream_frames_sampled", "frames_sampled", "counter", "Frames kept by the sampler."),
    ("stream_frames_dropped", "dropped", "counter", "Frames dropped (live source behind)."),
    ("stream_reconnects", "reconnects", "counter", "Source reconnections that got frames again."),
    ("stream_reconnect_attempts", "reconnect_attempts", "counter", "Source reconnect tries (failed ones too)."),
    ("stream_sequence_gaps", "sequence_gaps", "counter", "Chunks lost between source and memory."),
    ("stream_tokens_seen", "tokens_seen", "counter", "Visual tokens fed to the compressor."),
    ("stream_lag_seconds", "lag_s", "gauge", "Wall-clock delay of the newest snapshot behind the source."),
    ("stream_tokens_held", "tokens_held", "gauge", "Visual tokens held in the compact memory."),
    ("stream_compression_ratio", "compression_ratio", "gauge", "tokens_seen / tokens_held."),
    ("stream_snapshot_version", "snapshot_version", "gauge", "Version of the newest snapshot."),
    ("stream_media_seconds", "t_end", "gauge", "Media time (s) the newest snapshot reaches."),
)

# (metric name, ReplicaStatus field, help): gauges labelled role + replica; a field that does not apply to
# the role (None) is not reported.
REPLICA_METRICS: tuple[tuple[str, str, str], ...] = (
    ("replica_streams", "streams", "Streams assigned (encoder) or whose newest snapshot it holds (llm)."),
    ("replica_frames_per_second", "frames_per_s", "Frames encoded per second since the previous report."),
    ("replica_batch_fill", "batch_fill", "Mean frames per batch / encoder.batch_frames."),
    ("replica_queue_depth", "queue_depth", "Token messages (encoder) or questions (llm) waiting."),
    ("replica_answers_in_flight", "answers_in_flight", "Answers being generated now."),
)


class QueryMetrics:
    """Per-query histograms and counters, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(f"{PREFIX}_query_latency_seconds", "Chat completion time, request to last token.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ttft = Histogram(f"{PREFIX}_query_ttft_seconds", "Time to first token, request to first text.",
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queries = Counter(f"{PREFIX}_queries", "Chat completions by outcome (ok, client_error, server_error).",
                               ["outcome"], registry=self.registry)
        self.tokens = Counter(f"{PREFIX}_query_tokens", "Tokens used by chat completions, by kind "
                              "(prompt includes visual).", ["kind"], registry=self.registry)
        self.rejected = Counter(f"{PREFIX}_queries_rejected", "Chat completions refused, by error code "
                                "(prompt_too_long, invalid_text, stream_failed, ...).", ["code"],
                                registry=self.registry)

    def observe_done(self, latency_s: float, ttft_s: float | None, usage: dict[str, Any]) -> None:
        """Record one answered query."""
        self.latency.observe(latency_s)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        self.queries.labels("ok").inc()
        for kind in ("prompt_tokens", "visual_tokens", "completion_tokens"):
            value = usage.get(kind)
            if isinstance(value, (int, float)):
                self.tokens.labels(kind.removesuffix("_tokens")).inc(value)

    def observe_failure(self, status: int, code: str | None = None) -> None:
        """Record one failed query; `code` is the error body's code (a fixed set: the label stays bounded)."""
        self.queries.labels("client_error" if status < 500 else "server_error").inc()
        self.rejected.labels(code or "unknown").inc()


def stream_families(statuses: Iterable[StreamStatus]) -> list[Metric]:
    """Metric families for the given stream statuses, labelled by stream_id (and state for `stream_up`)."""
    families: dict[str, Metric] = {}
    for name, _, kind, doc in STREAM_METRICS:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families[name] = cls(f"{PREFIX}_{name}", doc, labels=["stream_id"])
    up = GaugeMetricFamily(f"{PREFIX}_stream_up", "1 per stream, labelled with its state.",
                           labels=["stream_id", "state"])
    for status in statuses:
        up.add_metric([status.stream_id, status.state], 1.0)
        for name, attr, _, _ in STREAM_METRICS:
            value = getattr(status, attr)
            if value is not None:
                families[name].add_metric([status.stream_id], float(value))
    return [up, *families.values()]


def replica_families(replicas: Iterable[ReplicaStatus], scale_totals: dict[tuple[str, str], int]) -> list[Metric]:
    """Metric families for the replica pools: gauges labelled role + replica (and state for `replica_up`),
    and the controller's scale event totals by role + action (`scale_totals`; they start again at 0 when the
    controller restarts, which Prometheus reads as a counter reset)."""
    families = {name: GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["role", "replica"])
                for name, _, doc in REPLICA_METRICS}
    up = GaugeMetricFamily(f"{PREFIX}_replica_up", "1 per replica, labelled with its state (alive, unavailable).",
                           labels=["role", "replica", "state"])
    for replica in replicas:
        up.add_metric([replica.role, replica.name, replica.state], 1.0)
        for name, attr, _ in REPLICA_METRICS:
            value = getattr(replica, attr)
            if value is not None:
                families[name].add_metric([replica.role, replica.name], float(value))
    scale = CounterMetricFamily(f"{PREFIX}_scale_events", "Replica pool changes the controller reported, by role "
                                "and action (add, remove, reassign, ...).", labels=["role", "action"])
    for (role, action), count in sorted(scale_totals.items()):
        scale.add_metric([role, action], float(count))
    return [up, *families.values(), scale]


class _Families:
    """The minimal registry interface `generate_latest` needs, over a fixed list of families."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(queries: QueryMetrics, statuses: Iterable[StreamStatus], replicas: Iterable[ReplicaStatus],
           scale_totals: dict[tuple[str, str], int]) -> bytes:
    """The Prometheus text exposition of the query registry plus the stream and replica telemetry."""
    families = stream_families(statuses) + replica_families(replicas, scale_totals)
    return generate_latest(queries.registry) + generate_latest(_Families(families))
