"""Stability detector: tolerance, hold time, median rounding, motion-bit bookkeeping."""

from __future__ import annotations

from edge.devices.weighbridge.stability import StabilityDetector, round_to_division


def feed_all(det: StabilityDetector, samples: list[tuple[float, float]], motion: bool = False):
    out = None
    for t, w in samples:
        out = det.feed(t, w, motion)
    return out


def test_stable_after_hold() -> None:
    det = StabilityDetector(tolerance_kg=20, hold_s=1.0, division_kg=20)
    assert feed_all(det, [(i * 0.1, 31000 + (i % 2) * 10) for i in range(10)]) is None  # 0.9 s
    cap = det.feed(1.0, 31000)
    assert cap is not None and cap.weight_kg == 31000 and cap.since == 0.0 and not cap.motion_bit_seen


def test_movement_restarts_hold() -> None:
    det = StabilityDetector(tolerance_kg=20, hold_s=1.0, division_kg=20)
    feed_all(det, [(i * 0.1, 31000) for i in range(9)])
    assert det.feed(0.9, 31100) is None  # a jump restarts the run
    assert feed_all(det, [(0.9 + i * 0.1, 31100) for i in range(1, 10)]) is None
    cap = det.feed(1.9, 31100)
    assert cap is not None and cap.since == 0.9


def test_median_rounded_to_division() -> None:
    det = StabilityDetector(tolerance_kg=40, hold_s=0.5, division_kg=20)
    cap = feed_all(det, [(0.0, 30990), (0.1, 31005), (0.2, 31012), (0.3, 31000), (0.6, 31011)])
    assert cap is not None and cap.weight_kg == 31000


def test_motion_bit_recorded_not_trusted() -> None:
    det = StabilityDetector(tolerance_kg=20, hold_s=0.5, division_kg=20)
    cap = feed_all(det, [(i * 0.1, 5000) for i in range(7)], motion=True)
    assert cap is not None and cap.motion_bit_seen


def test_ramp_never_stable_and_window_bounded() -> None:
    det = StabilityDetector(tolerance_kg=20, hold_s=1.0, division_kg=20, max_samples=50)
    assert all(det.feed(i * 0.1, i * 100.0) is None for i in range(100))
    for i in range(1000):
        det.feed(10 + i * 0.1, 8000)
    assert len(det._window) <= 50


def test_round_to_division() -> None:
    assert round_to_division(31009, 20) == 31000 and round_to_division(31011, 20) == 31020
    assert round_to_division(12.345, 0) == 12.345
