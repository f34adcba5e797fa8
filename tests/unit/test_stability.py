"""Stability detector: tolerance, hold time, median rounding, motion-bit bookkeeping."""

from __future__ import annotations

import pytest

from edge.devices.weighbridge.stability import Jump, StabilityDetector, StepDetector, round_to_division


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


# --- remote-control jumps (StepDetector) ------------------------------------------------------


def _steps(weights: list[float], motion: list[bool] | None = None, hz: float = 10.0) -> list[Jump]:
    det = StepDetector(min_step_kg=200, within_s=0.5, tolerance_kg=20, hold_s=1.0, division_kg=20)
    out = []
    for i, w in enumerate(weights):
        jump = det.feed(i / hz, w, motion[i] if motion else False)
        if jump is not None:
            out.append(jump)
    return out


def test_a_clean_step_between_two_settled_weights_is_a_jump() -> None:
    [jump] = _steps([20000.0] * 15 + [22000.0] * 15)
    assert (jump.from_kg, jump.to_kg, jump.step_kg) == (20000, 22000, 2000)
    assert jump.settled_at - jump.left_at == pytest.approx(0.1)


def test_a_step_through_the_indicators_filter_is_still_a_jump() -> None:
    assert len(_steps([20000.0] * 15 + [20700.0, 21500.0] + [22000.0] * 15)) == 1


def test_a_truck_rolling_on_is_no_jump() -> None:
    """Half on, then a two-second ramp to fully on: a truck moving, not a remote."""
    ramp = [12000 + i * 800 for i in range(20)]
    assert _steps([12000.0] * 15 + ramp + [28000.0] * 15) == []


def test_motion_between_the_plateaus_is_no_jump() -> None:
    weights = [20000.0] * 15 + [21000.0] + [22000.0] * 15
    motion = [False] * 15 + [True] + [False] * 15
    assert _steps(weights, motion) == []


def test_small_steps_and_noise_are_no_jump() -> None:
    assert _steps([20000.0] * 15 + [20100.0] * 15) == []  # below min_step_kg
    assert _steps([20000.0, 20020.0] * 20) == []


def test_a_step_before_the_weight_settled_is_no_jump() -> None:
    assert _steps([20000.0] * 5 + [22000.0] * 15) == []  # the first weight never held hold_s
