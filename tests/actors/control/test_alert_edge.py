"""The rising-edge state machine of alert rules on scripted answer sequences (no Ray, no model)."""

from __future__ import annotations

from actors.control.alert_edge import EdgeState, run_edges

Y, N = True, False


def seq(*answers: bool, dt: float = 1.0) -> list[tuple[bool, float]]:
    """Answers one snapshot per `dt` media seconds, starting at t = dt."""
    return [(a, (i + 1) * dt) for i, a in enumerate(answers)]


def test_fires_once_on_the_rising_edge_and_again_after_a_no():
    assert run_edges(seq(N, Y, Y, Y, N, Y, Y)) == [1, 5]


def test_yes_from_the_start_fires_at_once():
    assert run_edges(seq(Y, Y, Y)) == [0]


def test_min_consecutive_needs_that_many_yes_in_a_row():
    assert run_edges(seq(N, Y, N, Y, Y, Y, Y), min_consecutive=3) == [5]
    assert run_edges(seq(Y, Y, N, Y, Y, N), min_consecutive=3) == []


def test_flapping_answers_fire_once_per_cooldown():
    flapping = seq(Y, N, Y, N, Y, N, Y, N, Y, N, Y)  # t = 1 .. 11
    assert run_edges(flapping, cooldown_s=0.0) == [0, 2, 4, 6, 8, 10]
    assert run_edges(flapping, cooldown_s=4.0) == [0, 4, 8]


def test_cooldown_over_during_a_yes_run_fires_once_a_no_came_between():
    # fired at t=1, "no" at t=2, yes again from t=3; cooldown 5 s ends at t=6, still inside the run
    assert run_edges(seq(Y, N, Y, Y, Y, Y, Y, Y), cooldown_s=5.0) == [0, 5]
    # no "no" after the firing: a yes held for ever fires once
    assert run_edges(seq(*[Y] * 20), cooldown_s=1.0) == [0]


def test_duplicate_or_older_versions_change_nothing():
    state = EdgeState()
    assert state.step(True, 5, 5.0, 1, 0.0)
    before = state.to_dict()
    assert not state.step(False, 5, 5.0, 1, 0.0)  # the same snapshot again (another replica)
    assert not state.step(False, 3, 3.0, 1, 0.0)  # an older one
    assert state.to_dict() == before
    assert not state.step(True, 6, 6.0, 1, 0.0)  # still yes: no new firing


def test_state_round_trips_through_its_document():
    state = EdgeState()
    for i, (yes, t) in enumerate(seq(N, Y, Y)):
        state.step(yes, i, t, 2, 3.0)
    copy = EdgeState.from_dict(state.to_dict())
    assert copy == state
    assert copy.step(False, 3, 4.0, 2, 3.0) == state.step(False, 3, 4.0, 2, 3.0)
