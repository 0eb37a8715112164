"""Alerts on a real local Ray pipeline with two LLM replicas and the tiny model, driven over HTTP.

The tiny random model answers "yes" to the rules' questions (its yes/no margin is positive for every prompt
tried, at every memory size and scale: tests/actors/workers/test_rule_scoring.py's questions included), so a
rule fires on its first evaluation. A cooldown longer than the test makes "exactly one firing" exact even if
an answer ever flipped: any second firing here would be a duplicate of the same event.
"""

from __future__ import annotations

import json

import httpx
import pytest
import ray

from actors.config import ApiConfig, EncoderConfig, LLMConfig, PipelineConfig, TransportConfig
from tests.frontends.api.conftest import served_pipeline
from tests.helpers import WebhookReceiver, wait_for
from vlm import ModelConfig

pytestmark = pytest.mark.ray
API_KEY = "alerts-key-0123456789"
STARTUP_S = 300.0  # actor processes + imports + tiny model, twice for the LLM, on a busy 2-core machine
STREAMS = ("cam", "dock")
FOREVER_S = 86400.0  # a cooldown longer than the test: one event per rule, whatever the answers do


def live(stream_id: str) -> dict:
    return {"id": stream_id, "url": "synthetic://?width=160&height=120&fps=10", "sample_rate_hz": 4,
            "frames_per_chunk": 2, "budget": 16}


@pytest.fixture(scope="module")
def deployment(ray_local, tmp_path_factory):
    """(pipeline client, API URL, API actor, namespace): two LLM replicas behind one controller."""
    config = PipelineConfig(
        transport=TransportConfig(hwm=8, send_timeout_ms=500), model=ModelConfig(path="tiny", max_new_tokens=4),
        encoder=EncoderConfig(batch_frames=8, max_wait_ms=20), llm=LLMConfig(replicas=2, max_concurrent=2),
        api=ApiConfig(port=0, api_key=API_KEY), checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
    )
    with served_pipeline(config) as (client, url, actor):
        yield client, url, actor, config.ray.namespace


@pytest.fixture(scope="module")
def http(deployment):
    with httpx.Client(base_url=deployment[1], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        yield c


def rules(http: httpx.Client) -> dict[str, dict]:
    response = http.get("/v1/alerts")
    assert response.status_code == 200, response.text
    return {r["id"]: r for r in response.json()["data"]}


def sse(url: str, after: int, count: int) -> list[dict]:
    """The first `count` alert events of GET /v1/alerts/events resumed after event `after`."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Last-Event-ID": str(after)}
    events: list[dict] = []
    with httpx.stream("GET", f"{url}/v1/alerts/events", headers=headers, timeout=httpx.Timeout(60.0)) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
                continue
            if fields.get("event") == "alert":
                event = json.loads(fields["data"])
                assert int(fields["id"]) == event["id"]
                events.append(event)
                if len(events) == count:
                    return events
            fields = {}
    raise AssertionError(f"the event stream ended after {events}")


def llm_names(client) -> set[str]:
    return {r.name for r in client.replicas() if r.role == "llm" and r.state == "alive"}


def test_one_firing_per_event_with_two_replicas_and_sse_resume_across_an_api_restart(deployment, http):
    client, url, actor, _ = deployment
    # given two live streams with snapshots, two alive LLM replicas and a rule per stream (one held for 3)
    for sid in STREAMS:
        assert http.post("/v1/streams", json=live(sid)).status_code == 201
    for sid in STREAMS:
        wait_for(lambda: (http.get(f"/v1/streams/{sid}").json().get("snapshot_version") or 0) >= 1, STARTUP_S,
                 f"a first snapshot of {sid}")
    wait_for(lambda: len(llm_names(client)) == 2, STARTUP_S, "two alive LLM replicas")
    specs = [{"stream_id": "cam", "prompt": "Is it dark?", "cooldown_s": FOREVER_S},
             {"stream_id": "cam", "prompt": "Is a star visible?", "min_consecutive": 3, "cooldown_s": FOREVER_S},
             {"stream_id": "dock", "prompt": "Is the door open?", "cooldown_s": FOREVER_S}]
    added = [http.post("/v1/alerts", json=spec) for spec in specs]
    assert [r.status_code for r in added] == [201] * 3, [r.text for r in added]
    ids = [r.json()["id"] for r in added]
    # when each rule has been checked on several snapshots, by the owner of its stream
    wait_for(lambda: all(r["counts"]["evaluations"] >= 6 for r in rules(http).values()), STARTUP_S,
             "six evaluations of every rule")
    owners = client.alert_stats()["owners"]
    assert set(owners) == set(STREAMS) and set(owners.values()) <= llm_names(client)
    # then each rule fired exactly once: one event each, in id order, at an answered snapshot
    listed = rules(http)
    assert [listed[i]["counts"]["firings"] for i in ids] == [1, 1, 1]
    assert all(listed[i]["last_evaluation"]["answer"] == "yes" and listed[i]["state"] == "firing" for i in ids)
    events = sse(url, 0, 3)
    assert sorted(e["rule_id"] for e in events) == sorted(ids)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    star = next(e for e in events if e["rule_id"] == ids[1])
    assert star["snapshot_version"] >= 3 and star["span"]["t_start"] <= star["span"]["t_end"]
    assert all(set(e) == {"id", "rule_id", "stream_id", "prompt", "span", "snapshot_version", "fired_at",
                          "evidence"} for e in events)
    # and more evaluations later still make no second event
    seen = {i: listed[i]["counts"]["evaluations"] for i in ids}
    wait_for(lambda: all(r["counts"]["evaluations"] >= seen[i] + 3 for i, r in rules(http).items()), STARTUP_S,
             "three more evaluations of every rule")
    assert len(client.alert_events(0)) == 3

    # when the API actor's process dies and a rule fires while it is down
    last = events[-1]["id"]
    ray.kill(actor, no_restart=False)
    late = client.add_alert({"stream_id": "dock", "prompt": "Is it raining?", "cooldown_s": FOREVER_S})
    fired = wait_for(lambda: client.alert_events(last), STARTUP_S, "the late rule's firing")
    assert [e["rule_id"] for e in fired] == [late["id"]]

    def back() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(back, STARTUP_S, "the API back on the same URL")
    # then a client resuming with its Last-Event-ID gets exactly the event it missed, and nothing twice
    (missed,) = sse(url, last, 1)
    assert missed["id"] == last + 1 and missed["rule_id"] == late["id"]
    assert [e["id"] for e in sse(url, 0, 4)] == [e["id"] for e in events] + [missed["id"]]

    # and a rule's webhook can be tested on demand through the real controller
    receiver = WebhookReceiver([])
    try:
        hooked = http.post("/v1/alerts", json={"stream_id": "dock", "prompt": "Is it windy?", "webhook": receiver.url,
                                               "cooldown_s": FOREVER_S}).json()
        assert http.post(f"/v1/alerts/{hooked['id']}/test").json() == \
            {"id": hooked["id"], "object": "alert.test", "delivered": True, "error": None}
        assert any(json.loads(body).get("test") is True for _, body in receiver.got)
        assert http.delete(f"/v1/alerts/{hooked['id']}").status_code == 200
    finally:
        receiver.shutdown()


def test_a_killed_owner_replica_hands_its_streams_over_and_no_rule_is_lost(deployment, http):
    client, _, _, namespace = deployment
    # given the rules of the first test, each fired once, and the replica owning "cam"
    before = wait_for(lambda: (r := rules(http)) and len(r) == 4 and r, STARTUP_S, "the first test's rules")
    owners = client.alert_stats()["owners"]
    victim = owners["cam"]
    evaluations = {i: r["counts"]["evaluations"] for i, r in before.items()}
    # when that replica is killed for good
    ray.kill(ray.get_actor(victim, namespace=namespace), no_restart=True)
    # then the stream gets a new owner among the replicas still alive
    new = wait_for(lambda: (o := client.alert_stats()["owners"]).get("cam") not in (None, victim) and o,
                   STARTUP_S, "a new owner of cam")
    assert new["cam"] in llm_names(client) and victim not in llm_names(client)
    # and every rule is still listed and evaluated again: its counter moves past where it was
    wait_for(lambda: all(r["counts"]["evaluations"] >= evaluations[i] + 3 for i, r in rules(http).items()),
             STARTUP_S, "three more evaluations of every rule after the owner change")
    after = rules(http)
    assert set(after) == set(before)
    # and no rule fired a second time across the owner change
    assert all(r["counts"]["firings"] == 1 for r in after.values())
    events = client.alert_events(0)
    assert sorted(e["rule_id"] for e in events) == sorted(before)
    metrics = http.get("/metrics").text
    assert "tokdyn_alert_firings_total 4.0" in metrics
