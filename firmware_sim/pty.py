"""A pseudo-terminal standing in for a serial port: the sim writes the master, a driver opens the
slave through a stable symlink (e.g. `.run/dev/wb-jm-1`), exactly as it would open /dev/ttyUSB0.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tty
from pathlib import Path
from types import TracebackType


class PtyPort:
    """A raw-mode pty pair with the slave symlinked at `link`; removed again on close."""

    def __init__(self, link: str | os.PathLike[str]) -> None:
        self.link = Path(link)
        self.master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd)  # no CR->LF mapping, no echo: bytes pass as sent
        tty.setraw(self.master_fd)
        os.set_blocking(self.master_fd, False)
        self.slave_path = os.ttyname(self._slave_fd)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(self.slave_path)
        self.dropped = 0

    def write(self, data: bytes) -> int:
        """Write without blocking; bytes nobody drains are dropped (a serial line has no backlog)."""
        try:
            n = os.write(self.master_fd, data)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                self.dropped += len(data)
                return 0
            raise
        self.dropped += len(data) - n
        return n

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.link.is_symlink() and os.readlink(self.link) == self.slave_path:
                self.link.unlink()
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
