"""Pipeline configuration: YAML -> frozen dataclasses, validated, with errors that name the bad key.

`ConfigError` is the one config error type users see: every error is one, and its message starts with the
dotted key path, e.g. ``streams[0].sample_rate_hz: expected > 0, got -1``. Component configs (stream,
compressor, vlm) stay usable alone and raise their own ValueErrors naming only their field
(``budget: expected >= 1``); `build` puts the path in front and re-raises them as ConfigError. Shipped configs live in ``configs/*.yaml`` and can be
named without a path (``load_config("default")``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from configs.schema import build, check, config_path

from vlm.config import ModelConfig
from compressor.config import CompressorConfig
from stream.config import SourceConfig, redact_url
from stream.curve import CurveKeys
from stream.urls import URL_SCHEMES, is_live_url

STREAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BIND_HOSTS = ("loopback", "node")
MAX_REPLICAS = 64  # replicas of one role: a bound on actors one config can ask for



def _check_replicas(replicas: Any, key: str = "replicas") -> None:
    ok = replicas == "auto" or (isinstance(replicas, int) and not isinstance(replicas, bool)
                                and 1 <= replicas <= MAX_REPLICAS)
    check(ok, key, f"an integer 1..{MAX_REPLICAS} or 'auto' (one per GPU in the cluster)", replicas)


def _check_resources(resources: Mapping[str, float], key: str) -> None:
    for name, amount in resources.items():
        check(isinstance(amount, (int, float)) and amount >= 0, f"{key}.{name}", "a number >= 0", amount)


@dataclass(frozen=True)
class RayConfig:
    """Where the actors run.

    address:      "local" starts a fresh single-node cluster in this process; "auto" joins the cluster started
                  with `ray start` on this machine; "ray://host:10001" connects through Ray Client.
    num_cpus:     CPUs a "local" cluster advertises (ignored when joining a cluster).
    namespace:    Ray namespace of the named actors (CLI and API find the controller there).
    max_restarts: how often Ray restarts a crashed actor (-1 = forever).
    """

    address: str = "local"
    num_cpus: int | None = 4
    namespace: str = "tokdyn"
    max_restarts: int = -1

    def __post_init__(self) -> None:
        ok = self.address in ("local", "auto") or self.address.startswith("ray://")
        check(ok, "address", "'local', 'auto' or 'ray://host:port'", self.address)
        check(self.num_cpus is None or self.num_cpus >= 1, "num_cpus", ">= 1 or null", self.num_cpus)
        check(bool(self.namespace), "namespace", "a non-empty name", self.namespace)
        check(self.max_restarts >= -1, "max_restarts", ">= -1", self.max_restarts)


@dataclass(frozen=True)
class TransportConfig:
    """ZeroMQ data plane.

    bind:            "loopback" binds 127.0.0.1 (one machine); "node" binds the node's IP as Ray reports it
                     (needed when actors sit on different nodes).
    hwm:             high-water mark in messages per socket (backpressure: senders wait or drop beyond it).
    send_timeout_ms: how long a sender waits on a full queue before it counts a drop (ms).
    curve:           CURVE-authenticate and encrypt every data socket (default); false only to measure
                     plain sockets against it (bench/transport.py).
    keys:            never in YAML: this deployment's CURVE keys, made when the config is built (once per
                     pipeline start-up) and handed to every actor inside this config through Ray; not in
                     repr, equality or the controller's table.
    """

    bind: str = "loopback"
    hwm: int = 8
    send_timeout_ms: int = 1000
    curve: bool = True
    keys: CurveKeys | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check(self.bind in BIND_HOSTS, "bind", f"one of {BIND_HOSTS}", self.bind)
        check(self.keys is None or isinstance(self.keys, CurveKeys), "keys",
              "none in YAML (made at start-up)", type(self.keys).__name__)
        if self.curve and self.keys is None:
            object.__setattr__(self, "keys", CurveKeys.generate())
        elif not self.curve:
            object.__setattr__(self, "keys", None)
        check(self.hwm >= 1, "hwm", ">= 1", self.hwm)
        check(self.send_timeout_ms >= 0, "send_timeout_ms", ">= 0", self.send_timeout_ms)


@dataclass(frozen=True)
class AutoscaleConfig:
    """Encoder replicas scaled by load (off by default; `tokdyn scale` and the API scale by hand).

    enabled:        let the controller add and remove encoder replicas.
    max_lag_s:      a stream whose lag (decode -> memory, wall-clock s) stays above this for `window_s`
                    asks for one more replica, if the cluster has the resources for it.
    idle_fraction:  when every replica's frames/s is below this fraction of what the pool did at its
                    busiest since the last change, and one fewer replica would do, one is removed.
    window_s:       how long a condition must hold before acting (s).
    cooldown_s:     least time between two decisions (s): a new replica needs time to load and take load.
    min_replicas, max_replicas: bounds of the pool.
    """

    enabled: bool = False
    max_lag_s: float = 5.0
    idle_fraction: float = 0.3
    window_s: float = 10.0
    cooldown_s: float = 60.0
    min_replicas: int = 1
    max_replicas: int = 8

    def __post_init__(self) -> None:
        check(self.max_lag_s > 0, "max_lag_s", "> 0 seconds", self.max_lag_s)
        check(0 <= self.idle_fraction < 1, "idle_fraction", "0 <= x < 1", self.idle_fraction)
        check(self.window_s >= 0, "window_s", ">= 0 seconds", self.window_s)
        check(self.cooldown_s >= 0, "cooldown_s", ">= 0 seconds", self.cooldown_s)
        check(1 <= self.min_replicas <= MAX_REPLICAS, "min_replicas", f"1..{MAX_REPLICAS}", self.min_replicas)
        check(self.min_replicas <= self.max_replicas <= MAX_REPLICAS, "max_replicas",
              f"min_replicas..{MAX_REPLICAS}", self.max_replicas)


@dataclass(frozen=True)
class EncoderConfig:
    """The vision encoder replicas (each batches frames across the streams assigned to it).

    replicas:     how many encoder actors: a number, or "auto" = one per GPU the cluster has (at least one).
                  Streams go to the least-loaded replica by sampled frames/s, preferring one on the node
                  their actors run on; `tokdyn scale encoder N` changes it at run time.
    batch_frames: most frames per forward pass (frames of several streams share a batch).
    max_wait_ms:  how long to wait for more frames before running a partial batch (ms).
    num_gpus:     GPUs Ray reserves for each replica (fractions share a GPU).
    num_cpus:     CPUs Ray reserves for each replica.
    resources:    extra Ray custom resources per replica, to pin replicas to nodes (e.g. {"node_b": 0.01}).
    autoscale:    replicas scaled by load (see AutoscaleConfig; off by default).
    """

    replicas: int | str = 1
    batch_frames: int = 16
    max_wait_ms: int = 20
    num_gpus: float = 0.0
    num_cpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    autoscale: AutoscaleConfig = field(default_factory=AutoscaleConfig)

    def __post_init__(self) -> None:
        _check_replicas(self.replicas)
        check(self.batch_frames >= 1, "batch_frames", ">= 1", self.batch_frames)
        check(self.max_wait_ms >= 0, "max_wait_ms", ">= 0", self.max_wait_ms)
        check(self.num_gpus >= 0, "num_gpus", ">= 0", self.num_gpus)
        check(self.num_cpus >= 0, "num_cpus", ">= 0", self.num_cpus)
        _check_resources(self.resources, "resources")


@dataclass(frozen=True)
class LLMConfig:
    """The LLM replicas (each holds every stream's newest snapshot; a question goes to the replica with the
    fewest answers in flight).

    replicas:       how many LLM actors: a number, or "auto" = one per GPU the cluster has (at least one).
    max_concurrent: questions one replica answers at the same time (more wait in Ray's queue).
    num_gpus:       GPUs Ray reserves for each replica.
    num_cpus:       CPUs Ray reserves for each replica.
    resources:      extra Ray custom resources per replica, to pin replicas to nodes.
    max_prompt_tokens: prompts (template + visual tokens + conversation) longer than this are refused with a
                    400 before any compute; null = the model's context length minus model.max_new_tokens.
    """

    replicas: int | str = 1
    max_concurrent: int = 4
    num_gpus: float = 0.0
    num_cpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    max_prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        _check_replicas(self.replicas)
        check(self.max_concurrent >= 1, "max_concurrent", ">= 1", self.max_concurrent)
        check(self.max_prompt_tokens is None or self.max_prompt_tokens >= 1, "max_prompt_tokens", ">= 1 or null",
               self.max_prompt_tokens)
        check(self.num_gpus >= 0, "num_gpus", ">= 0", self.num_gpus)
        check(self.num_cpus >= 0, "num_cpus", ">= 0", self.num_cpus)
        _check_resources(self.resources, "resources")


@dataclass(frozen=True)
class ApiConfig:
    """HTTP API (OpenAI-style chat completions + stream management).

    enabled:        start the API with `tokdyn serve`.
    host:           interface to bind; 127.0.0.1 unless you put an authenticating proxy in front.
    port:           TCP port (0 = any free port).
    api_key:        bearer token clients must send; null = no authentication (loopback only).
    max_body_bytes: largest request body accepted (bytes).
    allowed_origins: web origins ("https://app.example:8443") whose pages may call the API from a browser;
                    requests from any other origin are refused (403), same-origin ones (the console) pass.
    trusted_hosts:  host names the API answers to besides IP addresses and localhost (the names clients use to
                    reach it); a request for any other name gets 400 (DNS rebinding).
    media_dir:      folder whose files streams added over HTTP may open (null = no local files over HTTP).
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 1_000_000
    allowed_origins: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    media_dir: str | None = None

    def __post_init__(self) -> None:
        check(bool(self.host), "host", "an interface address", self.host)
        object.__setattr__(self, "trusted_hosts", tuple(self.trusted_hosts))
        for name in self.trusted_hosts:
            check(isinstance(name, str) and bool(re.fullmatch(r"[A-Za-z0-9.-]{1,253}", name)), "trusted_hosts",
                  "host names like 'pipeline.example'", name)
        check(self.media_dir is None or bool(self.media_dir), "media_dir", "null or a folder", self.media_dir)
        check(0 <= self.port <= 65535, "port", "0..65535", self.port)
        check(self.api_key is None or len(self.api_key) >= 8, "api_key", "null or >= 8 characters", "***")
        check(self.max_body_bytes >= 1024, "max_body_bytes", ">= 1024", self.max_body_bytes)
        origins = tuple(self.allowed_origins)
        for origin in origins:
            parts = urlsplit(origin) if isinstance(origin, str) else None
            check(parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)
                   and origin == f"{parts.scheme}://{parts.netloc}", "allowed_origins",
                   "origins like 'https://host:port' (scheme and host, no path)", origin)
        object.__setattr__(self, "allowed_origins", origins)


@dataclass(frozen=True)
class StreamSpec:
    """One video stream and the memory kept for it.

    stream_id:        short name ([A-Za-z0-9_.-], up to 64 characters), unique in the pipeline.
    url:              file path, file://, rtsp://, http(s)://, synthetic://?width=..&height=..&fps=..,
                      scene://?seed=..&seconds=.. (a scene with known truth, scenes/) or
                      sample://vtest | sample://bigbuckbunny (a real clip fetched once into the cache).
    sample_rate_hz:   frames per second of media time kept for the encoder.
    frames_per_chunk: sampled frames per chunk (the unit of encoding, compression and checkpointing).
    live:             true: pace like a camera and drop the oldest frames when behind; false: read as fast as
                      the pipeline takes (nothing lost); null: live for network streams (rtsp, rtmp, srt, udp,
                      HLS .m3u8 ...), synthetic:// and scene://, else not (stream.urls.is_live_url).
    loop:             replay a file forever (demos).
    compressor:       the memory: method by name, token budget, ... (compressor/config.py).
    source:           decoding / reconnect options (stream/config.py); `realtime` and `loop` follow the keys
                      above.
    max_media_lead_s: live streams: how far (s) a chunk's media time may run ahead of the memory's arrival
                      clock (newest media time held + wall time since it arrived); a chunk further ahead is
                      refused, never checkpointed (a forged or broken clock must not freeze the stream).
    """

    stream_id: str
    url: str = field(repr=False)  # a repr (logs, tracebacks) must never print its credentials
    sample_rate_hz: float = 2.0
    frames_per_chunk: int = 4
    live: bool | None = None
    loop: bool = False
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    max_media_lead_s: float = 30.0

    def __post_init__(self) -> None:
        check(bool(STREAM_ID_RE.match(self.stream_id or "")), "stream_id", "[A-Za-z0-9_.-]{1,64}", self.stream_id)
        check(self.max_media_lead_s > 0, "max_media_lead_s", "> 0", self.max_media_lead_s)
        check(bool(self.url), "url", "a video URL or path", self.url)
        check(urlsplit(self.url).scheme.lower() in URL_SCHEMES, "url",
               f"a file path or a URL with one of {sorted(URL_SCHEMES - {''})}", redact_url(self.url))
        check(self.sample_rate_hz > 0, "sample_rate_hz", "> 0", self.sample_rate_hz)
        check(self.frames_per_chunk >= 1, "frames_per_chunk", ">= 1", self.frames_per_chunk)

    @property
    def is_live(self) -> bool:
        """Whether the source is paced as live: explicit `live`, else `stream.urls.is_live_url`."""
        return self.live if self.live is not None else is_live_url(self.url)


@dataclass(frozen=True)
class PipelineConfig:
    """The whole pipeline: cluster, model, actors, API, checkpoint folder and the streams started with it.

    checkpoint_dir:   folder for the compressors' checkpoints (one file per stream, rewritten every chunk);
                      "~" expands. Must be reachable from the nodes that run compressors.
    stream_resources: extra Ray custom resources for every stream's source and memory actors (pins them
                      to nodes that advertise the resource).
    streams_per_host: 0 = every stream runs its own source and memory actors (two processes a stream);
                      N >= 1 = streams run in stream hosts of up to N streams each, on their encoder
                      replica's node (one process for N streams: actors/workers/host.py).
    """

    ray: RayConfig = field(default_factory=RayConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    checkpoint_dir: str = "~/.cache/tokdyn/checkpoints"
    stream_resources: dict[str, float] = field(default_factory=dict)
    streams_per_host: int = 0
    streams: tuple[StreamSpec, ...] = ()

    def __post_init__(self) -> None:
        check(bool(self.checkpoint_dir), "checkpoint_dir", "a folder path", self.checkpoint_dir)
        _check_resources(self.stream_resources, "stream_resources")
        check(self.streams_per_host >= 0, "streams_per_host", ">= 0", self.streams_per_host)
        ids = [s.stream_id for s in self.streams]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        check(not dupes, "streams", "unique stream_id values", dupes)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir).expanduser()


def stream_spec(data: StreamSpec | Mapping[str, Any]) -> StreamSpec:
    """A StreamSpec from a spec or a plain dict (as sent by the CLI or the HTTP API)."""
    return build(StreamSpec, data, "stream")


def load_config(path_or_name: str | Path = "default") -> PipelineConfig:
    """Load and validate a pipeline config from YAML ("default" -> configs/default.yaml)."""
    path = config_path(path_or_name)
    data = yaml.safe_load(path.read_text()) or {}
    return build(PipelineConfig, data)
