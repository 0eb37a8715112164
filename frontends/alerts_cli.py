"""`tokdyn alerts add|list|rm|test|watch`: alert rules of a running `tokdyn serve`, and their firings as they come.

`watch` polls the controller's retained events (the same history GET /v1/alerts/events serves) and prints one
line per firing (or its JSON with --json); `--after N` resumes after event N.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

WATCH_POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser, connect: Callable[[argparse.Namespace], Any]) -> None:
    """The `alerts` subcommand's actions on `parser`; `connect(args)` gives a PipelineClient."""
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a yes/no rule checked on every snapshot of a stream")
    add.add_argument("stream_id")
    add.add_argument("prompt", help='a yes/no question, e.g. "Is a star visible?"')
    add.add_argument("--min-consecutive", type=int, default=None, help="yes answers in a row before it fires (1)")
    add.add_argument("--cooldown", type=float, default=None, help="media seconds before it may fire again (10)")
    add.add_argument("--webhook", default=None, help="http(s) URL to POST each firing to (signed)")
    ls = actions.add_parser("list", help="rules with their state and counts")
    ls.add_argument("--stream", default=None, help="only this stream's rules")
    rm = actions.add_parser("rm", help="delete a rule")
    rm.add_argument("rule_id")
    test = actions.add_parser("test", help="send a rule's webhook a signed test event now")
    test.add_argument("rule_id")
    watch = actions.add_parser("watch", help="print firings as they happen (Ctrl-C ends)")
    watch.add_argument("--after", type=int, default=None, help="resume after this event id (default: new only)")
    for p in (add, ls, test, watch):
        p.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=lambda args: run(args, connect(args)))


def rule_line(rule: dict[str, Any]) -> str:
    """One rule as a line: id, stream, state, counts, prompt."""
    counts = rule["counts"]
    last = rule.get("last_evaluation") or {}
    return (f"{rule['id']:<10} {rule['stream_id']:<12} {rule['state']:<7} last={last.get('answer', '-'):<3} "
            f"evals={counts['evaluations']} fired={counts['firings']} delivered={counts['deliveries']} "
            f"failures={counts['delivery_failures']}  {rule['prompt']!r}")


def event_line(event: dict[str, Any]) -> str:
    span = event["span"]
    return (f"#{event['id']} {event['stream_id']} {event['rule_id']} fired at media {span['t_end']:.1f} s "
            f"(snapshot {event['snapshot_version']}): {event['prompt']!r}")


def run(args: argparse.Namespace, client: Any) -> int:
    """Run one `alerts` action; errors propagate to the CLI's main (one message, one exit code)."""
    if args.action == "add":
        spec: dict[str, Any] = {"stream_id": args.stream_id, "prompt": args.prompt}
        for key, value in (("min_consecutive", args.min_consecutive), ("cooldown_s", args.cooldown),
                           ("webhook", args.webhook)):
            if value is not None:
                spec[key] = value
        rule = client.add_alert(spec)
        print(json.dumps(rule) if args.json else rule_line(rule))
        if rule.get("webhook_secret") and not args.json:
            print(f"webhook secret (shown once; verify X-Tokdyn-Signature with it): {rule['webhook_secret']}")
    elif args.action == "list":
        for rule in client.list_alerts(args.stream):
            print(json.dumps(rule) if args.json else rule_line(rule))
    elif args.action == "rm":
        client.delete_alert(args.rule_id)
        print(f"removed {args.rule_id}")
    elif args.action == "test":
        outcome = client.test_alert(args.rule_id)
        print(json.dumps(outcome) if args.json else
              f"{args.rule_id}: webhook {'answered 2xx' if outcome['delivered'] else 'failed: ' + outcome['error']}")
        return 0 if outcome["delivered"] else 1
    else:
        after = args.after if args.after is not None else client.alert_stats()["last_event_id"]
        try:
            while True:
                for event in client.alert_events(after, 100):
                    after = event["id"]
                    print(json.dumps(event) if args.json else event_line(event), flush=True)
                time.sleep(WATCH_POLL_S)
        except KeyboardInterrupt:
            return 0
    return 0
