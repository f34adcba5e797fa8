"""Long demo steps say what they do and roughly how long: one progress line every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_S = 5.0


def wait_with_progress(step: str, check: Callable[[], tuple[bool, str]], timeout: float, *,
                       expected_s: float | None = None, every: float = EVERY_S,
                       poll: float = 1.0, alive: Callable[[], None] | None = None) -> tuple[bool, float]:
    """Poll `check` (done, what it sees) until done or `timeout`; print `step: <what> (<elapsed>)`
    every `every` seconds. `expected_s`: how long the step usually takes (said up front).
    `alive` raises if a process the step relies on died. Returns (done, seconds taken)."""
    started = time.monotonic()
    hint = f"about {expected_s:.0f} s" if expected_s else f"up to {timeout:.0f} s"
    print(f"{step}: started ({hint})", flush=True)
    last = started
    while True:
        done, status = check()
        elapsed = time.monotonic() - started
        if done:
            print(f"{step}: done in {elapsed:.1f} s ({status})", flush=True)
            return True, elapsed
        if elapsed > timeout:
            print(f"{step}: gave up after {elapsed:.0f} s ({status})", flush=True)
            return False, elapsed
        if time.monotonic() - last >= every:
            last = time.monotonic()
            left = f", ~{max(0.0, expected_s - elapsed):.0f} s left" if expected_s else ""
            print(f"{step}: {status} ({elapsed:.0f} s{left})", flush=True)
        if alive is not None:
            alive()
        time.sleep(poll)
