"""The rising edge of one alert rule: pure state, no Ray, no clock but the snapshots' media time.

Per rule, every evaluated snapshot gives one yes/no answer. The rule fires when "yes" has held for
`min_consecutive` snapshots in a row after a "no" (or after the rule was created), and then not again until
it has answered "no" again AND `cooldown_s` media seconds have passed since the firing. When a yes-run is
still going on at the end of the cooldown (after a "no" in between), it fires at the first snapshot where all
three hold: armed by a "no", `min_consecutive` yes in a row, cooldown over.

Snapshots are identified by their version: an answer for a version not newer than the last one seen is a
duplicate (two replicas during an owner change, a re-published snapshot) and changes nothing, so a rule
never fires twice for one snapshot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EdgeState:
    """What one rule remembers between snapshots (persisted with the rule).

    streak: "yes" answers in a row up to the last snapshot.
    armed: a "no" was seen since the last firing (True at creation: the start counts as a "no").
    fired_t: media time (s) of the last firing's snapshot end, None before the first.
    version: the newest snapshot version answered, -1 before the first.
    """

    streak: int = 0
    armed: bool = True
    fired_t: float | None = None
    version: int = -1

    def step(self, yes: bool, version: int, t: float, min_consecutive: int, cooldown_s: float) -> bool:
        """Take the answer `yes` for snapshot `version` ending at media time `t`; True when the rule fires.

        A `version` not newer than the last one taken is ignored (returns False, state unchanged).
        """
        if version <= self.version:
            return False
        self.version = version
        if not yes:
            self.streak = 0
            self.armed = True
            return False
        self.streak += 1
        cooled = self.fired_t is None or t - self.fired_t >= cooldown_s
        if self.armed and self.streak >= min_consecutive and cooled:
            self.armed = False
            self.fired_t = t
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (the durable table)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EdgeState:
        """Inverse of to_dict; raises KeyError / TypeError / ValueError on a damaged document."""
        fired = doc["fired_t"]
        return cls(int(doc["streak"]), bool(doc["armed"]), None if fired is None else float(fired),
                   int(doc["version"]))


def run_edges(answers: list[tuple[bool, float]], min_consecutive: int = 1, cooldown_s: float = 0.0) -> list[int]:
    """Indices of `answers` ((yes, media t) per snapshot, versions 0, 1, ...) at which a fresh rule fires."""
    state = EdgeState()
    return [i for i, (yes, t) in enumerate(answers) if state.step(yes, i, t, min_consecutive, cooldown_s)]
