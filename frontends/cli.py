"""`tokdyn` command line: demo, serve, streams add|list|rm, ask, scale, compress, inspect, probe, train.

`serve` starts a pipeline (and the HTTP API) and keeps it running; `streams`, `ask` and `scale` talk to that running
pipeline through Ray: they join the cluster (`ray.init(address="auto")`) and find the controller by name
("tokdyn-controller" in namespace "tokdyn", `--namespace` to change). The HTTP API of `serve` offers the
same operations to programs that do not speak Ray.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from actors.client.cluster import check_reachable
from actors.errors import PipelineError
from actors.status import ROLES
from frontends import alerts_cli
from frontends.display import format_span, print_answer, status_line
import scenes.video  # noqa: F401  registers scene:// for `probe` and `compress` (stream/ imports no scenes)
from stream import probe

if TYPE_CHECKING:
    from actors.client.client import PipelineClient
    from actors.status import ReplicaStatus, ScaleEvent

EVENTS_SHOWN = 10  # `tokdyn scale` lists the pools' last events under the replicas


def cmd_serve(args: argparse.Namespace) -> int:
    import ray

    from actors.client.pipeline import start_pipeline

    from actors.config import load_config

    config = load_config(args.config)
    client = start_pipeline(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C (SIGINT) stops, even when started with SIGINT ignored: a shell gives its background jobs (`tokdyn
    # serve &` in a script, nohup) that disposition, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        api_url = None
        if config.api.enabled:
            from frontends.api.server import start_api

            _, api_url = start_api(config.api, namespace=config.ray.namespace)  # finds the controller by name
        what = ("adopted the pipeline already running in this namespace (its own config and streams)"
                if client.adopted else f"serving {len(config.streams)} stream(s) with {config.model.name}")
        print(f"tokdyn {what}; Ray at {ray.get_runtime_context().gcs_address} (namespace {config.ray.namespace})"
              + (f"; HTTP API on {api_url}" if api_url else "") + ". Ctrl-C stops.", flush=True)
        while not stop.wait(2.0):
            _watch(client)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ...", flush=True)
        client.shutdown()
        ray.shutdown()
    return 0


def _watch(client: PipelineClient) -> None:
    """Wait for the controller to answer. While Ray restarts it (its process died) the streams go on, so
    serve says so and waits instead of tearing the pipeline down."""
    from actors.errors import PipelineUnavailable

    try:
        client.wait_ready(60)
    except PipelineUnavailable:
        print("the controller does not answer (Ray restarts it; streams keep running): waiting", flush=True)


def _client(args: argparse.Namespace) -> PipelineClient:
    from actors.client.pipeline import connect

    return connect(args.address, args.namespace)


def cmd_streams(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "list":
        for status in client.list_streams():
            print(json.dumps(status.to_dict()) if args.json else status_line(status))
    elif args.action == "add":
        spec: dict[str, Any] = {"stream_id": args.stream_id, "url": args.url, "sample_rate_hz": args.rate,
                                "loop": args.loop, "compressor": {"method": args.method, "budget": args.budget}}
        if args.live is not None:
            spec["live"] = args.live
        print(json.dumps(client.add_stream(spec).to_dict()))
    else:
        rules = client.remove_stream(args.stream_id)
        print(f"removed {args.stream_id}" + (f" and its {rules} alert rules" if rules else ""))
    return 0


def media_seconds(text: str) -> float:
    """argparse type of `ask --since/--until`: a finite number of media seconds >= 0 (streams start at 0)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected media seconds, a finite number >= 0, got {text!r}")
    return value


def check_window(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 with a usage line, before anything connects, when `ask --since` lies after `--until`."""
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None and since > until:
        parser.error(f"ask: expected --since <= --until (media seconds), got --since {since:g} > --until {until:g}")


def cmd_ask(args: argparse.Namespace) -> int:
    window = None
    if args.since is not None or args.until is not None:  # media seconds; an open end means "up to now"
        window = (args.since if args.since is not None else 0.0, args.until if args.until is not None else math.inf)
    done = print_answer(_client(args).ask(args.stream_id, args.question, args.max_tokens, args.temperature,
                                          window=window))
    print(format_span(done))
    if done.get("note"):
        print(done["note"])
    return 0


def replica_count(text: str) -> int:
    """argparse type of `scale ROLE N`: an integer 1..MAX_REPLICAS."""
    from actors.config import MAX_REPLICAS  # imports torch (seconds): only when a count is given

    try:
        count = int(text)
    except ValueError:
        count = 0  # refused below, with the text as given
    if not 1 <= count <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"expected a number of replicas, an integer 1..{MAX_REPLICAS}, got {text!r}")
    return count


def check_scale(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 with a usage line, before anything connects, when `scale` has a ROLE but no N."""
    if getattr(args, "command", None) == "scale" and args.role is not None and args.count is None:
        parser.error(f"scale: expected ROLE and N together (e.g. `tokdyn scale {args.role} 2`), got no N")


def replica_table(replicas: Iterable[ReplicaStatus]) -> list[str]:
    """A header and one line per replica; '-' where a field does not apply to the role or is not known."""
    def cell(value: float | int | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [f"{'ROLE':<8} {'REPLICA':<22} {'STATE':<12} {'NODE':<12} {'STREAMS':>7} {'FRAMES/S':>8} "
             f"{'FILL':>5} {'QUEUE':>5} {'ANSWERING':>9}"]
    for r in replicas:
        lines.append(f"{r.role:<8} {r.name:<22} {r.state:<12} {(r.node_id or '-')[:12]:<12} {r.streams:>7} "
                     f"{cell(r.frames_per_s, '.2f'):>8} {cell(r.batch_fill, '.2f'):>5} "
                     f"{cell(r.queue_depth, 'd'):>5} {cell(r.answers_in_flight, 'd'):>9}")
    return lines


def event_line(event: ScaleEvent) -> str:
    """One scale event: when (UTC), what, and why."""
    at = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(event.at))
    return f"{at}  {event.role} {event.action} {event.replica} -> {event.replicas} replica(s) ({event.reason})"


def cmd_scale(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.role is not None:  # ScaleRefused (the cluster cannot host them) exits 1 with its message
        print("\n".join(replica_table(client.scale(args.role, args.count))))
        return 0
    print("\n".join(replica_table(client.replicas())))
    events = client.scale_events()[-EVENTS_SHOWN:]
    print(f"\nlast {len(events)} scale event(s), oldest first:" if events else "\nno scale events yet")
    for event in events:
        print(event_line(event))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from frontends.demo import run_demo

    return run_demo(url=args.url, seconds=args.seconds, questions=args.question or None)


def cmd_compress(args: argparse.Namespace) -> int:
    from actors.config import load_config
    from frontends.offline import compress_file

    summary = compress_file(args.video, args.output, config=load_config(args.config).model,
                            rate_hz=args.rate, budget=args.budget, max_frames=args.max_frames, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from frontends.offline import inspect_file

    summary = inspect_file(args.file, png=args.png)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from train.config import load_train_config
    from train.loop import run_training

    model_dir = run_training(load_train_config(args.config, args.set, output=args.output, steps=args.steps))
    print(f"trained model in {model_dir} (serve it with model.path: {model_dir})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokdyn", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run everything on the embedded default and ask a few questions")
    demo.add_argument("--url", default=None, help="video instead of the default scene camera (path, rtsp://, "
                      "sample://vtest, synthetic://, scene://?seed=N&seconds=S)")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to watch before asking (s); a "
                      "scene:// camera instead plays to its end and is asked questions with known answers")
    demo.add_argument("--question", action="append", help="a question to ask (repeatable)")
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="run a pipeline (and its HTTP API) until Ctrl-C")
    serve.add_argument("-c", "--config", default="default", help="config name or YAML path")
    serve.set_defaults(func=cmd_serve)

    for name, helptext in (("streams", "manage the streams of a running `tokdyn serve`"),
                           ("ask", "ask a running `tokdyn serve` about a stream (answer streamed)"),
                           ("scale", "list the encoder and LLM replicas of a running `tokdyn serve`, or set "
                                     "how many of a role run")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--address", default="auto", help="Ray cluster address of the running serve")
        p.add_argument("--namespace", default="tokdyn", help="Ray namespace of the running serve")
        if name == "streams":
            actions = p.add_subparsers(dest="action", required=True)
            add = actions.add_parser("add", help="start a stream")
            add.add_argument("stream_id")
            add.add_argument("url")
            add.add_argument("--rate", type=float, default=2.0, help="sampled frames per second")
            add.add_argument("--method", default="token_dynamics", help="compressor method")
            add.add_argument("--budget", type=int, default=32, help="visual tokens per answer")
            add.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                             help="pace as live and drop when behind (default: inferred from the URL)")
            add.add_argument("--loop", action="store_true", help="replay a file forever")
            ls = actions.add_parser("list", help="streams and their telemetry")
            ls.add_argument("--json", action="store_true", help="one JSON object per line")
            rm = actions.add_parser("rm", help="stop a stream and delete its memory")
            rm.add_argument("stream_id")
            p.set_defaults(func=cmd_streams)
        elif name == "scale":
            p.add_argument("role", nargs="?", choices=ROLES, help="the pool to resize (omit both ROLE and N to "
                           "list the replicas and the last scale events)")
            p.add_argument("count", nargs="?", type=replica_count, metavar="N", help="replicas of ROLE to run")
            p.set_defaults(func=cmd_scale)
        else:
            p.add_argument("stream_id")
            p.add_argument("question")
            p.add_argument("--max-tokens", type=int, default=64)
            p.add_argument("--temperature", type=float, default=0.0)
            p.add_argument("--since", type=media_seconds, help="answer about media time from this second of "
                           "the stream on (from its segments; default: the live memory)")
            p.add_argument("--until", type=media_seconds, help="... up to this second (default: up to now)")
            p.set_defaults(func=cmd_ask)

    comp = sub.add_parser("compress", help="offline: decode a whole video, encode it, Token Dynamics, save")
    comp.add_argument("video")
    comp.add_argument("-o", "--output", required=True, help="output file (.tdz)")
    comp.add_argument("-c", "--config", default="default", help="config whose model encodes the frames")
    comp.add_argument("--rate", type=float, default=2.0, help="sampled frames per second")
    comp.add_argument("--budget", type=int, default=32, help="visual tokens kept (K, as in `streams add --budget`)")
    comp.add_argument("--max-frames", type=int, default=256, help="stop after this many sampled frames")
    comp.add_argument("--seed", type=int, default=0)
    comp.set_defaults(func=cmd_compress)

    insp = sub.add_parser("inspect", help="figures of a compressed file, and a PNG of frames + key map")
    insp.add_argument("file")
    insp.add_argument("--png", default=None, help="where to write the PNG (default: FILE with .png)")
    insp.set_defaults(func=cmd_inspect)

    train = sub.add_parser("train", help="fine-tune a model on memories built by the streaming compressor (Ray Train)")
    train.add_argument("-c", "--config", required=True, help="training config name or YAML path")
    train.add_argument("--output", default=None, help="run directory (overrides the config; resumes if it holds a run)")
    train.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides steps/epochs)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="set a dotted config key, value as YAML (e.g. --set model.init=out/run/model); repeatable")
    train.set_defaults(func=cmd_train)

    alerts = sub.add_parser("alerts", help="alert rules of a running `tokdyn serve`: add, list, rm, test, watch")
    alerts.add_argument("--address", default="auto", help="Ray cluster address of the running serve")
    alerts.add_argument("--namespace", default="tokdyn", help="Ray namespace of the running serve")
    alerts_cli.add_arguments(alerts, _client)

    probe_parser = sub.add_parser("probe", help="does this camera or file work? codec, size, fps, contact sheet")
    probe.add_arguments(probe_parser)
    probe_parser.set_defaults(func=probe.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_window(parser, args)
    check_scale(parser, args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "address", None) is not None:
            check_reachable(args.address)  # before the imports below (torch: seconds): a wrong address fails fast
    except LookupError as exc:
        print(f"tokdyn: {exc}", file=sys.stderr)
        return 2
    from configs.schema import ConfigError

    try:
        return args.func(args)
    except PipelineError as exc:  # StreamNotFound, StreamNotReady, StreamExists, ...: the message says what to do
        print(f"tokdyn: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, LookupError, FileNotFoundError) as exc:  # a bad config, no running pipeline
        print(f"tokdyn: {exc}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as exc:  # other bad input (a model's InputError, a source that fails)
        print(f"tokdyn: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
