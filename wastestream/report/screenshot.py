"""Render the report to PNG with headless Chromium (Debian's `chromium`), to check it looks right.

`python -m wastestream.report.screenshot report.html out.png` (the `report-screenshot` make
target) installs Chromium and a CJK font first if missing (apt-get). Chromium runs with a
fresh profile directory, no network services and no GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ScreenshotError(RuntimeError):
    pass


def find_chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in CHROMIUM_NAMES) if p), None)


def _apt(*packages: str) -> None:
    import os

    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and shutil.which("sudo") is None:
        raise ScreenshotError(f"cannot install {' '.join(packages)}: not root and no sudo")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-q", *packages], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", *packages]):
        proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, env=env, check=False)
        if proc.returncode == 0 and cmd[1] == "install":
            return
    raise ScreenshotError(f"apt-get install {' '.join(packages)} failed: {proc.stderr[-1000:]}")


def ensure_chromium() -> str:
    """Chromium and a CJK font (the report is in Chinese), installed with apt-get when missing.

    Idempotent: nothing runs when both are present. ScreenshotError says why it cannot install."""
    if find_chromium() is None:
        _apt("chromium")
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    if not fonts.stdout.strip():
        _apt("fonts-wqy-microhei")
    browser = find_chromium()
    if browser is None:
        raise ScreenshotError("chromium still not found after apt-get install chromium")
    return browser


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 2400,
               timeout: float = 90.0) -> Path:
    """Write a PNG of `html` (a local file) at `width`×`height`; ScreenshotError when it fails."""
    browser = find_chromium()
    if browser is None:
        raise ScreenshotError("chromium not found: apt-get install -y chromium")
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ws-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", html.resolve().as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ScreenshotError(f"chromium did not finish within {timeout:.0f} s") from exc
    if not png.exists() or png.stat().st_size == 0:
        raise ScreenshotError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m wastestream.report.screenshot REPORT.html OUT.png", file=sys.stderr)
        return 2
    try:
        ensure_chromium()
        print(screenshot(Path(args[0]), Path(args[1])))
    except ScreenshotError as exc:
        print(f"screenshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
