"""Which encoder replica serves which stream: least-loaded by sampled frames/s, near the stream's actors.

Plain functions over plain data (no Ray), so the policy is tested on its own. A stream's load is the frames
per second its source samples (what its encoder replica has to encode); a replica's load is the sum over the
streams assigned to it. Placement prefers a replica on the node where the stream's source and memory run
(their frames then stay off the network) as long as that costs at most one stream's worth of imbalance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Replica:
    """An alive encoder replica: its actor name and the Ray node it runs on."""

    name: str
    node_id: str | None


def loads(assignments: Mapping[str, str], fps: Mapping[str, float], replicas: list[Replica]) -> dict[str, float]:
    """Frames/s per replica name (every replica listed, 0.0 when it serves nothing)."""
    out = {r.name: 0.0 for r in replicas}
    for sid, name in assignments.items():
        if name in out:
            out[name] += fps.get(sid, 0.0)
    return out


def pick(stream_fps: float, stream_node: str | None, replicas: list[Replica], load: Mapping[str, float]) -> str:
    """The replica a stream of `stream_fps` should go to: the least loaded, or one on `stream_node` whose load is
    within `stream_fps` of it (ties: name order, so the choice is deterministic). Raises ValueError when there
    is no replica."""
    if not replicas:
        raise ValueError("expected at least one alive encoder replica, got none")
    ordered = sorted(replicas, key=lambda r: (load[r.name], r.name))
    least = ordered[0]
    local = [r for r in ordered if stream_node is not None and r.node_id == stream_node]
    if local and load[local[0].name] <= load[least.name] + stream_fps:
        return local[0].name
    return least.name


def assign(assignments: Mapping[str, str], fps: Mapping[str, float], nodes: Mapping[str, str | None],
           replicas: list[Replica]) -> dict[str, str]:
    """Assignments where every stream has an alive replica: streams whose replica is gone (or that have none)
    are placed with `pick`, heaviest first; the others keep theirs. `nodes`: stream id -> node of its actors."""
    alive = {r.name for r in replicas}
    out = {sid: name for sid, name in assignments.items() if name in alive}
    load = loads(out, fps, replicas)
    orphans = sorted((sid for sid in assignments if sid not in out), key=lambda s: (-fps.get(s, 0.0), s))
    for sid in orphans:
        out[sid] = pick(fps.get(sid, 0.0), nodes.get(sid), replicas, load)
        load[out[sid]] += fps.get(sid, 0.0)
    return out


def rebalance(assignments: Mapping[str, str], fps: Mapping[str, float], replicas: list[Replica],
              ) -> dict[str, str]:
    """Assignments after moving streams from the busiest replica to the idlest while a move narrows the gap
    between them (a stream moves only if the idlest stays below the busiest's load after taking it); the
    fewest moves that get there, lightest streams kept in place. Streams of gone replicas are not handled
    here (see `assign`)."""
    out = dict(assignments)
    if len(replicas) < 2:
        return out
    for _ in range(len(out)):  # each move strictly narrows the spread: bounded
        load = loads(out, fps, replicas)
        busiest = max(replicas, key=lambda r: (load[r.name], r.name)).name
        idlest = min(replicas, key=lambda r: (load[r.name], r.name)).name
        gap = load[busiest] - load[idlest]
        movable = sorted((sid for sid, name in out.items() if name == busiest),
                         key=lambda s: (-fps.get(s, 0.0), s))
        move = next((sid for sid in movable if 0 < fps.get(sid, 0.0) < gap), None)
        if move is None:
            return out
        out[move] = idlest
    return out
