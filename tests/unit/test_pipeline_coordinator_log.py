"""On a fresh Kafka the demo's own group client waits for the group coordinator: aiokafka logs that
wait at ERROR/WARNING (`Group Coordinator Request failed: ... CoordinatorNotAvailableError`,
`Marking the coordinator dead`); commit_group_at_end's filter makes those DEBUG, nothing else."""

from __future__ import annotations

import logging

from aiokafka import errors

from wastestream.pipeline import COORDINATOR_LOG, CoordinatorNotReady


def record(level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(COORDINATOR_LOG, level, __file__, 1, msg, args, None)


def test_the_coordinator_wait_of_our_group_is_debug() -> None:
    quiet = CoordinatorNotReady("ws-demo")
    lookup = record(logging.ERROR, "Group Coordinator Request failed: %s",
                    errors.CoordinatorNotAvailableError())
    dead = record(logging.WARNING, "Marking the coordinator dead (node %s)for group %s.", 1, "ws-demo")
    for r in (lookup, dead):
        quiet.filter(r)
        assert r.levelno == logging.DEBUG and r.levelname == "DEBUG", r.getMessage()


def test_real_errors_and_other_groups_keep_their_level() -> None:
    quiet = CoordinatorNotReady("ws-demo")
    fatal = record(logging.ERROR, "Group Coordinator Request failed: %s", errors.UnknownError())
    other = record(logging.WARNING, "Marking the coordinator dead (node %s)for group %s.", 1, "someone-else")
    unrelated = record(logging.ERROR, "Heartbeat failed: %r", errors.CoordinatorNotAvailableError())
    for r, level in ((fatal, logging.ERROR), (other, logging.WARNING), (unrelated, logging.ERROR)):
        assert quiet.filter(r) and r.levelno == level, r.getMessage()
