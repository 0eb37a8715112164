"""`tokdyn alerts ...` over a client whose controller is an AlertBook (no Ray)."""

from __future__ import annotations

import argparse
import json

import pytest

from actors.control.alerts import AlertBook
from actors.control.kv import MemoryStore
from frontends import alerts_cli
from frontends.cli import build_parser


class Alerts:
    """PipelineClient.alerts over a book (what AlertClient forwards to the controller)."""

    def __init__(self) -> None:
        self.book = AlertBook(MemoryStore())

    def add(self, spec):
        return self.book.add(spec, ["cam"])

    def list(self, stream_id=None):
        return self.book.list(stream_id)

    def delete(self, rule_id):
        self.book.delete(rule_id)

    def events(self, after, limit):
        return self.book.events_after(after, limit)

    def stats(self):
        return self.book.stats()


def run(client, argv: list[str]) -> None:
    args = build_parser().parse_args(["alerts", *argv])
    assert alerts_cli.run(args, client) == 0


def test_add_list_rm(capsys):
    client = argparse.Namespace(alerts=Alerts())
    run(client, ["add", "cam", "Is a star visible?", "--min-consecutive", "2", "--json"])
    assert json.loads(capsys.readouterr().out)["min_consecutive"] == 2
    run(client, ["list"])
    out = capsys.readouterr().out
    assert "alert-1" in out and "'Is a star visible?'" in out
    run(client, ["rm", "alert-1"])
    assert capsys.readouterr().out.strip() == "removed alert-1"
    assert client.alerts.list() == []


def test_watch_prints_firings_after_the_given_id(capsys, monkeypatch):
    client = argparse.Namespace(alerts=Alerts())
    rule = client.alerts.add({"stream_id": "cam", "prompt": "q", "cooldown_s": 0})["id"]
    for version, yes in enumerate([True, False, True]):
        client.alerts.book.apply([{"stream_id": "cam", "version": version, "t_start": 0.0, "t_end": version * 2.0,
                                   "answers": {rule: [yes, 1.0]}, "skipped": 0, "latency_s": 0.0}])

    def stop(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(alerts_cli.time, "sleep", stop)
    run(client, ["watch", "--after", "1"])
    assert capsys.readouterr().out.startswith("#2 cam alert-1 fired at media 4.0 s (snapshot 2)")
