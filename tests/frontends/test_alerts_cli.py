"""`tokdyn alerts ...` through the real client over a controller whose alerts are an AlertBook (no Ray)."""

from __future__ import annotations

import json

import pytest

from actors.client.client import PipelineClient
from actors.control.alerts import AlertBook
from actors.control.kv import MemoryStore
from actors.control.webhooks import send_test_event
from frontends import alerts_cli
from frontends.cli import build_parser
from tests.helpers import WebhookReceiver


class Controller:
    """The controller's alert operations over a book, in process (no Ray)."""

    def __init__(self) -> None:
        self.book = AlertBook(MemoryStore())

    def add_alert(self, spec):
        return self.book.add(spec, ["cam"])

    def list_alerts(self, stream_id=None):
        return self.book.list(stream_id)

    def delete_alert(self, rule_id):
        self.book.delete(rule_id)

    def test_alert(self, rule_id):
        return send_test_event(rule_id, *self.book.test_event(rule_id))

    def alert_events(self, after, limit):
        return self.book.events_after(after, limit)

    def alert_stats(self):
        return self.book.stats()


class LocalClient(PipelineClient):
    """The real client (its operations as actors/client/operations.py declares them), calling the controller in
    process instead of through Ray."""

    def _get(self, method, *args, timeout_s=None):
        return getattr(self.controller, method)(*args)


def run(client, argv: list[str]) -> None:
    args = build_parser().parse_args(["alerts", *argv])
    assert alerts_cli.run(args, client) == 0


def test_add_list_rm(capsys):
    client = LocalClient(Controller())
    run(client, ["add", "cam", "Is a star visible?", "--min-consecutive", "2", "--json"])
    assert json.loads(capsys.readouterr().out)["min_consecutive"] == 2
    run(client, ["list"])
    out = capsys.readouterr().out
    assert "alert-1" in out and "'Is a star visible?'" in out
    run(client, ["rm", "alert-1"])
    assert capsys.readouterr().out.strip() == "removed alert-1"
    assert client.list_alerts() == []


def test_watch_prints_firings_after_the_given_id(capsys, monkeypatch):
    client = LocalClient(Controller())
    rule = client.add_alert({"stream_id": "cam", "prompt": "q", "cooldown_s": 0})["id"]
    for version, yes in enumerate([True, False, True]):
        client.controller.book.apply([{"stream_id": "cam", "version": version, "t_start": 0.0, "t_end": version * 2.0,
                                   "answers": {rule: [yes, 1.0]}, "skipped": 0, "latency_s": 0.0}])

    def stop(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(alerts_cli.time, "sleep", stop)
    run(client, ["watch", "--after", "1"])
    assert capsys.readouterr().out.startswith("#2 cam alert-1 fired at media 4.0 s (snapshot 2)")


def test_test_says_whether_the_webhook_answered_and_exits_non_zero_when_not(capsys):
    client = LocalClient(Controller())
    receiver = WebhookReceiver([500])
    try:
        rule = client.add_alert({"stream_id": "cam", "prompt": "Is a star visible?", "webhook": receiver.url})
        failed = alerts_cli.run(build_parser().parse_args(["alerts", "test", rule["id"]]), client)
        assert failed == 1 and capsys.readouterr().out.strip() == f"{rule['id']}: webhook failed: HTTP 500"
        run(client, ["test", rule["id"], "--json"])
        assert json.loads(capsys.readouterr().out)["delivered"] is True
    finally:
        receiver.shutdown()
