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
