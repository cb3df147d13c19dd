"""50 users sending 5 jobs each at once, scaled down to 20 × 5: the outcomes, never the times
(`imagine-bot bench --load` prints those)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from bot.config import LimitsConfig
from tests.discord.load import run_load

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_burst_from_many_users_is_acked_limited_shared_and_delivered() -> None:
    users, each = 20, 5
    limits = LimitsConfig(max_running_per_user=1, max_queued_per_user=2, max_queued_total=100)
    report = await run_load(users=users, jobs_per_user=each, rounds=1, limits=limits)

    assert report.sent == users * each
    assert report.unacked == 0  # every interaction answered within Discord's 3 s
    assert len(report.accepted) == users * 3  # 1 running + 2 waiting each …
    assert len(report.refusals) == users * 2  # … and the rest told why, privately
    assert all(
        text.startswith("**Queue full**") and "may have at most 3" in text
        for text in report.refusals
    ), report.refusals[:3]
    assert report.delivered == len(report.accepted)  # every accepted job reached Discord
    # … its grid uploaded to its own message, after its ack (what `bench --load` times)
    assert len(report.uploads_s) == report.delivered
    # the jobs ran one after another: the last grid came near the end of the run
    assert min(report.uploads_s) > 0 and max(report.uploads_s) > report.elapsed_s / 2
    assert "/imagine → grid upload p50" in report.table()

    # Owners take turns: nobody's third job starts before everyone's first has.
    starts: dict[str, list[int]] = defaultdict(list)
    for place, owner in enumerate(report.started_by):
        starts[owner].append(place)
    assert len(starts) == users and all(len(places) == 3 for places in starts.values())
    assert max(places[0] for places in starts.values()) < min(
        places[2] for places in starts.values()
    )
