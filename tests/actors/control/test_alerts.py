"""Alert rules in the durable book (no Ray): validation, persistence, one firing per event, webhooks to a
receiver on 127.0.0.1 (signed, a 500 retried, a silent receiver stalls only its own rule)."""

from __future__ import annotations

import json
import socket

import pytest

from actors.control.alerts import AlertBook
from actors.control.kv import MemoryStore
from actors.control.webhooks import WebhookSender, send_test_event, verify
from actors.errors import AlertNotFound, StreamNotFound
from configs.schema import ConfigError
from tests.helpers import WebhookReceiver, wait_for

STREAMS = ["cam", "dock"]


def result(stream_id: str, version: int, answers: dict, t_end: float | None = None) -> dict:
    t_end = float(version) if t_end is None else t_end
    return {"stream_id": stream_id, "version": version, "t_start": 0.0, "t_end": t_end, "answers": answers,
            "skipped": 0, "latency_s": 0.01}


@pytest.mark.parametrize("body, field", [
    ({"stream_id": "cam", "prompt": "x", "colour": "red"}, "colour"),
    ({"stream_id": "cam", "prompt": "   "}, "prompt"),
    ({"stream_id": "cam", "prompt": "x" * 501}, "prompt"),
    ({"stream_id": "cam", "prompt": "x", "webhook": "ftp://host/hook"}, "webhook"),
    ({"stream_id": "cam", "prompt": "x", "webhook": "file:///etc/passwd"}, "webhook"),
    ({"stream_id": "cam", "prompt": "x", "min_consecutive": 0}, "min_consecutive"),
    ({"stream_id": "cam", "prompt": "x", "min_consecutive": True}, "min_consecutive"),
    ({"stream_id": "cam", "prompt": "x", "cooldown_s": -1}, "cooldown_s"),
    ({"stream_id": 3, "prompt": "x"}, "stream_id"),
])
def test_a_bad_rule_names_its_field_and_changes_nothing(body, field):
    store = MemoryStore()
    book = AlertBook(store)
    with pytest.raises(ConfigError, match=f"^{field}: "):
        book.add(body, STREAMS)
    assert book.list() == [] and store.docs == {}


def test_unknown_stream_is_not_found_and_changes_nothing():
    book = AlertBook(MemoryStore())
    with pytest.raises(StreamNotFound, match="nope"):
        book.add({"stream_id": "nope", "prompt": "a star is visible?"}, STREAMS)
    assert book.list() == []


def test_rules_round_trip_and_survive_a_new_book_on_the_same_store():
    store = MemoryStore()
    book = AlertBook(store)
    made = book.add({"stream_id": "cam", "prompt": "Is a star visible?", "min_consecutive": 2,
                     "webhook": "https://u:hunter2@example.org/hook?token=abc"}, STREAMS)
    assert made["id"] == "alert-1" and len(made["webhook_secret"]) >= 16
    assert "hunter2" not in json.dumps(book.list()) and "abc" not in json.dumps(book.list())
    assert "webhook_secret" not in book.get("alert-1")
    book.add({"stream_id": "dock", "prompt": "Is anything moving left?"}, STREAMS)
    assert [r["id"] for r in book.list("dock")] == ["alert-2"]
    again = AlertBook(store)  # a restarted controller
    assert [r["id"] for r in again.list()] == ["alert-1", "alert-2"]
    assert again.get("alert-1")["min_consecutive"] == 2
    again.delete("alert-2")
    with pytest.raises(AlertNotFound):
        again.get("alert-2")
    assert again.add({"stream_id": "cam", "prompt": "q"}, STREAMS)["id"] == "alert-3"  # ids never reused


def test_removing_a_stream_removes_its_rules():
    book = AlertBook(MemoryStore())
    for prompt in ("a?", "b?"):
        book.add({"stream_id": "cam", "prompt": prompt}, STREAMS)
    book.add({"stream_id": "dock", "prompt": "c?"}, STREAMS)
    assert book.remove_stream("cam") == 2 and book.remove_stream("cam") == 0
    assert [r["stream_id"] for r in book.list()] == ["dock"]


def test_two_replicas_answering_the_same_snapshots_fire_once_and_events_resume():
    store = MemoryStore()
    book = AlertBook(store)
    rid = book.add({"stream_id": "cam", "prompt": "a star?", "cooldown_s": 0}, STREAMS)["id"]
    answers = [False, True, True, False, True]
    fired = []
    for version, yes in enumerate(answers):
        for _replica in range(2):  # old and new owner both answer during a move
            fired += book.apply([result("cam", version, {rid: [yes, 1.0 if yes else -1.0]})])
    assert [e["snapshot_version"] for e in fired] == [1, 4]
    assert [e["id"] for e in fired] == [1, 2]
    assert book.get(rid)["counts"] == {"evaluations": 5, "firings": 2, "deliveries": 0, "delivery_failures": 0}
    event = fired[0]
    assert set(event) >= {"id", "rule_id", "stream_id", "prompt", "span", "snapshot_version", "fired_at", "evidence"}
    restarted = AlertBook(store)
    assert [e["id"] for e in restarted.events_after(1)] == [2]
    assert restarted.apply([result("cam", 4, {rid: [True, 1.0]})]) == []  # already answered before the restart


def test_webhook_is_signed_retried_after_a_500_and_a_silent_receiver_stalls_no_other_rule():
    receiver = WebhookReceiver([500])
    silent = socket.socket()  # accepts connections (backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    book = AlertBook(MemoryStore())
    good = book.add({"stream_id": "cam", "prompt": "a?", "webhook": receiver.url}, STREAMS)
    stuck = book.add({"stream_id": "dock", "prompt": "b?",
                      "webhook": f"http://127.0.0.1:{silent.getsockname()[1]}/hook"}, STREAMS)
    sender = WebhookSender(book.delivered, backoff_s=0.05, max_attempts=3, timeout_s=30.0)
    try:
        events = book.apply([result("dock", 1, {stuck["id"]: [True, 1.0]})])  # first: the stuck one
        events += book.apply([result("cam", 1, {good["id"]: [True, 1.0]})])
        for event in events:
            url, secret = book.webhook_of(event["rule_id"])
            sender.send(event["rule_id"], url, secret, event)
        wait_for(lambda: book.get(good["id"])["counts"]["deliveries"] == 1, timeout_s=10.0)
        (h1, b1), (h2, b2) = receiver.got
        assert b1 == b2 and h1["Idempotency-Key"] == h2["Idempotency-Key"] == f"tokdyn-alert-{events[1]['id']}"
        assert verify(good["webhook_secret"], h2["X-Tokdyn-Timestamp"], b2, h2["X-Tokdyn-Signature"])
        assert not verify("another secret of length", h2["X-Tokdyn-Timestamp"], b2, h2["X-Tokdyn-Signature"])
        assert json.loads(b2)["rule_id"] == good["id"]
        counts = book.get(good["id"])["counts"]
        assert counts["delivery_failures"] == 1 and book.get(good["id"])["last_delivery_error"] == "HTTP 500"
        assert book.get(stuck["id"])["counts"]["deliveries"] == 0  # still waiting on its silent receiver
    finally:
        sender.stop()
        receiver.shutdown()
        silent.close()


def test_a_test_delivery_is_signed_says_whether_it_arrived_and_records_nothing():
    ok, refusing = WebhookReceiver([]), WebhookReceiver([503])
    book = AlertBook(MemoryStore())
    good = book.add({"stream_id": "cam", "prompt": "a?", "webhook": ok.url}, STREAMS)
    bad = book.add({"stream_id": "dock", "prompt": "b?", "webhook": refusing.url}, STREAMS)
    plain = book.add({"stream_id": "cam", "prompt": "c?"}, STREAMS)
    try:
        assert send_test_event(good["id"], *book.test_event(good["id"])) == \
            {"id": good["id"], "object": "alert.test", "delivered": True, "error": None}
        headers, body = ok.got[0]
        event = json.loads(body)
        assert event["test"] is True and event["rule_id"] == good["id"] and event["id"].startswith("test-")
        assert verify(good["webhook_secret"], headers["X-Tokdyn-Timestamp"], body, headers["X-Tokdyn-Signature"])
        assert send_test_event(bad["id"], *book.test_event(bad["id"]))["error"] == "HTTP 503"
        with pytest.raises(ConfigError, match="^webhook: expected a rule with a webhook"):
            book.test_event(plain["id"])
        with pytest.raises(AlertNotFound):
            book.test_event("alert-99")
        assert book.events_after(0) == [] and book.get(good["id"])["counts"]["deliveries"] == 0
    finally:
        ok.shutdown()
        refusing.shutdown()
