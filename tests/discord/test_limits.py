"""The admission rule on its own (the wire-level limit tests are in test_queue.py)."""

from __future__ import annotations

import pytest

from bot.config import LimitsConfig
from bot.limits import QueueLoad, admit

LIMITS = LimitsConfig(max_running_per_user=2, max_queued_per_user=1, max_queued_total=5)


@pytest.mark.parametrize(
    ("load", "count", "allowed", "starts"),
    [
        (QueueLoad(0, 0), 1, True, ""),
        (QueueLoad(2, 2), 1, True, "**Job queued**"),
        (QueueLoad(3, 3), 1, False, "**Queue full**\nYou have 3"),
        (QueueLoad(1, 0), 3, False, "**Queue full**\nYou have 1"),
        (QueueLoad(0, 5), 1, False, "**Queue full**\nThe queue is full"),
    ],
)
def test_admit(load: QueueLoad, count: int, allowed: bool, starts: str) -> None:
    admission = admit(LIMITS, load, count)
    assert admission.allowed is allowed
    assert admission.message.startswith(starts) and bool(admission.message) == bool(starts)
