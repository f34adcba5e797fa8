"""Motion detection from the weights themselves, not only the indicator's motion bit.

A cheating setup can hold the motion bit low while the load rocks, and the XK3190 frame has
no motion bit at all, so stability is decided from the readings: every reading received in
the last `hold_s` seconds (monotonic receive time) lies within `tolerance_kg`. The motion bit
is still recorded so a ticket can say whether the indicator agreed.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StableCapture:
    """A stable weight: median of the window, rounded to the division."""

    weight_kg: float
    since: float
    at: float
    samples: int
    motion_bit_seen: bool


def round_to_division(weight_kg: float, division_kg: float) -> float:
    if division_kg <= 0:
        return weight_kg
    return round(round(weight_kg / division_kg) * division_kg, 6)


class StabilityDetector:
    """Feed (time, weight, motion bit); `feed` returns a StableCapture while the load is at rest."""

    def __init__(self, tolerance_kg: float, hold_s: float, division_kg: float, max_samples: int = 10_000):
        self.tolerance_kg = tolerance_kg
        self.hold_s = hold_s
        self.division_kg = division_kg
        self._window: deque[tuple[float, float, bool]] = deque()
        self._max_samples = max_samples
        self._run_start: float | None = None

    def reset(self) -> None:
        self._window.clear()
        self._run_start = None

    def feed(self, t: float, weight_kg: float, motion: bool | None = None) -> StableCapture | None:
        w = self._window
        w.append((t, weight_kg, bool(motion)))
        if self._run_start is None:
            self._run_start = t
        # keep only the latest run of readings that agree within the tolerance
        while max(x[1] for x in w) - min(x[1] for x in w) > self.tolerance_kg:
            w.popleft()
            self._run_start = w[0][0]
        while len(w) > self._max_samples or (len(w) > 1 and w[0][0] < t - self.hold_s):
            w.popleft()  # older readings of the same run: the run start is remembered
        if t - self._run_start < self.hold_s - 1e-9:
            return None
        weights = [x[1] for x in w]
        return StableCapture(
            weight_kg=round_to_division(statistics.median(weights), self.division_kg),
            since=self._run_start,
            at=t,
            samples=len(weights),
            motion_bit_seen=any(x[2] for x in w),
        )


@dataclass(frozen=True, slots=True)
class Jump:
    """A step between two settled weights, faster than a truck can change its load on the deck."""

    from_kg: float
    to_kg: float
    left_at: float
    """Receive time of the last reading at the old weight."""
    settled_at: float
    """Receive time of the first reading at the new weight."""

    @property
    def step_kg(self) -> float:
        return round(self.to_kg - self.from_kg, 6)


class StepDetector:
    """Remote-control cheating (遥控作弊) seen in the weight curve.

    A remote-controlled weight is switched by a relay or a resistor in the load-cell cable: the
    displayed weight steps from one settled value to another within the indicator's filter
    time, with no motion in between, while the truck stands still. A truck that really moves on
    the deck (an axle rolling on, a driver climbing out) rocks the deck: readings in between,
    the motion bit, a transition of seconds. So a jump is: a weight settled for `hold_s`, then
    within `within_s` (no motion bit, nothing in between that restarts the clock) a new weight
    at least `min_step_kg` away that settles for `hold_s` again. Feed only the readings of one
    visit (the truck on the deck); `reset` between visits.
    """

    def __init__(self, min_step_kg: float, within_s: float, tolerance_kg: float, hold_s: float,
                 division_kg: float) -> None:
        self.min_step_kg, self.within_s = min_step_kg, within_s
        self._stable = StabilityDetector(tolerance_kg, hold_s, division_kg)
        self._plateau: tuple[float, float, float] | None = None  # (weight, run start, last reading)
        self._moved = False

    def reset(self) -> None:
        self._stable.reset()
        self._plateau = None
        self._moved = False

    def feed(self, t: float, weight_kg: float, motion: bool | None = None) -> Jump | None:
        if motion:
            self._moved = True  # the indicator saw movement: what follows is no clean step
            self._stable.reset()
            return None
        cap = self._stable.feed(t, weight_kg)
        if cap is None:
            return None
        plateau = self._plateau
        self._plateau = (cap.weight_kg, cap.since, t)
        if plateau is None or plateau[1] == cap.since:
            self._moved = False
            return None
        old_w, _, old_last = plateau
        clean = not self._moved and cap.since - old_last <= self.within_s + 1e-9
        self._moved = False
        if clean and abs(cap.weight_kg - old_w) >= self.min_step_kg:
            return Jump(old_w, cap.weight_kg, old_last, cap.since)
        return None
