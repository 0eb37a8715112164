"""Prometheus metrics for `GET /metrics`: per-stream telemetry and per-query latency.

Stream telemetry lives in the pipeline's actors, so it is read at scrape time (one `stream_status` per
stream) and rendered as fresh metric families: nothing goes stale after a stream is removed. Query metrics
are measured here, in the API process, as histograms in a registry owned by one app (so several apps in
one process, as in the tests, do not collide).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

PREFIX = "tokdyn"
# Seconds; a tiny CPU model answers in tens of ms, a real 0.5B model on CPU in seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# (metric name, status key(s) in preference order, kind, help). Counters read monotonic totals kept by the
# pipeline; a key missing from a status (older actor, stream still starting) is simply not reported.
STREAM_METRICS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("stream_frames_in", ("frames_in",), "counter", "Frames decoded from the source."),
    ("stream_frames_sampled", ("frames_sampled", "sampled"), "counter", "Frames kept by the sampler."),
    ("stream_frames_dropped", ("dropped", "frames_dropped"), "counter", "Frames dropped (live source behind)."),
    ("stream_reconnects", ("reconnects",), "counter", "Source reconnections."),
    ("stream_tokens_seen", ("tokens_seen",), "counter", "Visual tokens fed to the compressor."),
    ("stream_lag_seconds", ("lag_s",), "gauge", "Wall-clock delay of the newest snapshot behind the source."),
    ("stream_tokens_held", ("tokens_held",), "gauge", "Visual tokens held in the compact memory."),
    ("stream_compression_ratio", ("compression_ratio",), "gauge", "tokens_seen / tokens_held."),
    ("stream_snapshot_version", ("snapshot_version",), "gauge", "Version of the newest snapshot."),
    ("stream_media_seconds", ("t_end",), "gauge", "Media time (s) the newest snapshot reaches."),
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

    def observe_failure(self, status: int) -> None:
        self.queries.labels("client_error" if status < 500 else "server_error").inc()


def stream_families(statuses: Iterable[dict[str, Any]]) -> list[Metric]:
    """Metric families for the given stream statuses, labelled by stream_id (and state for `stream_up`)."""
    families: dict[str, Metric] = {}
    for name, _, kind, doc in STREAM_METRICS:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families[name] = cls(f"{PREFIX}_{name}", doc, labels=["stream_id"])
    up = GaugeMetricFamily(f"{PREFIX}_stream_up", "1 per stream, labelled with its state.",
                           labels=["stream_id", "state"])
    for status in statuses:
        stream_id = str(status.get("stream_id", ""))
        up.add_metric([stream_id, str(status.get("state", "unknown"))], 1.0)
        for name, keys, _, _ in STREAM_METRICS:
            value = next((status[k] for k in keys if isinstance(status.get(k), (int, float))), None)
            if value is not None and not isinstance(value, bool):
                families[name].add_metric([stream_id], float(value))
    return [up, *families.values()]


class _Families:
    """The minimal registry interface `generate_latest` needs, over a fixed list of families."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(queries: QueryMetrics, statuses: Iterable[dict[str, Any]]) -> bytes:
    """The Prometheus text exposition of the query registry plus the stream telemetry."""
    return generate_latest(queries.registry) + generate_latest(_Families(stream_families(statuses)))
