"""The queue as users see it: fair turns, positions, limits and multi-job confirmation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from bot.config import LimitsConfig
from bot.delivery import Submitted
from bot.imagine import ConfirmJobs
from bot.limits import Admission
from bot.store import JobStatus
from engine.jobs import Job, imagine_job
from engine.prompt import parse_prompt
from tests.discord.helpers import Harness, harness, job_id_of
from tests.fake_discord import StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_users_take_turns(harness: Harness) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()  # every job below waits in the queue
    alpha = [await h.job_message(await h.imagine(f"alpha {n}")) for n in (1, 2, 3)]
    bravo = await h.job_message(await h.imagine("bravo 1", user_id=h.bob))

    # alpha 1 is next; bob's only job comes before alpha's other two.
    assert [m.content.rsplit("> ", 1)[1] for m in (*alpha, bravo)] == [
        "(Waiting to start)", "(Queued: position 2)", "(Queued: position 3)", "(Queued: position 2)"
    ]  # fmt: skip
    await h.release(blocker)
    await h.finished(bravo.id)
    status = [h.stored(m).status for m in (*alpha, bravo)]
    # alpha 2 may have started by now; alpha 3 waits for it.
    assert status[0] is JobStatus.DONE and status[3] is JobStatus.DONE
    assert status[1] in (JobStatus.QUEUED, JobStatus.RUNNING) and status[2] is JobStatus.QUEUED


async def test_waiting_messages_follow_their_queue_position(harness: Harness) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()
    first = await h.job_message(await h.imagine("first"))
    second = await h.job_message(await h.imagine("second", user_id=h.bob))
    assert second.content.endswith("(Queued: position 2)")

    await h.release(blocker)

    # Once the blocker is done and `first` runs, `second` is next: its message says so.
    await h.new_message(lambda m: m.id == second.id and m.content.endswith("(Waiting to start)"))
    assert h.engine.position(job_id_of(first)) == 0


async def test_past_the_per_user_limit_is_queue_full(harness: Harness) -> None:
    h = harness
    await h.start(limits=LimitsConfig(max_running_per_user=1, max_queued_per_user=1))
    await h.blocker()
    await h.job_message(await h.imagine("one"))
    second = await h.imagine("two")
    await h.job_message(second)

    note = await h.private_reply(second)
    refused = await h.private_reply(await h.imagine("three"))

    assert note.startswith("**Job queued**")
    assert refused.startswith("**Queue full**\nYou have 2 job(s) running or waiting")
    assert len(h.engine.jobs(str(h.tester))) == 2


async def test_past_the_global_limit_is_queue_full(harness: Harness) -> None:
    h = harness
    await h.start(limits=LimitsConfig(max_queued_total=1))
    await h.blocker()
    await h.job_message(await h.imagine("waiting", user_id=h.bob))

    refused = await h.private_reply(await h.imagine("one too many"))

    assert refused.startswith("**Queue full**\nThe queue is full")


# --- several jobs from one prompt ---------------------------------------------------------------


async def confirmation(h: Harness, prompt: str) -> tuple[StoredMessage, str, str]:
    interaction = await h.imagine(prompt)
    callback = await h.fake.wait_for_callback(interaction)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] == 64
    question = h.fake.original_message(interaction)
    assert question is not None
    by_label = {b["label"]: b["custom_id"] for b in question.buttons}
    return question, by_label["Yes"], by_label["No"]


async def test_permutations_ask_first_and_yes_runs_every_job(harness: Harness) -> None:
    h = harness
    await h.start()
    question, yes, _ = await confirmation(h, "a {red, blue} bird --repeat 2")
    assert "**4 jobs**" in question.content
    assert h.engine.jobs() == ()

    press = await h.press(question, yes)

    callback = await h.fake.wait_for_callback(press)
    assert callback.json["type"] == 7 and callback.json["data"]["content"] == "Starting 4 jobs."

    def four_posted() -> list[StoredMessage] | None:
        posted = [m for m in h.fake.live_messages() if m.interaction_id == press.id]
        return posted if len(posted) == 4 else None

    posted = await h.fake.wait_until(four_posted, timeout=10, what="4 job messages")
    jobs = h.bot.store.user_jobs(str(h.tester))  # stored before their messages were posted
    assert sorted(j.job.request.prompt for j in jobs) == [
        "a blue bird", "a blue bird", "a red bird", "a red bird"
    ]  # fmt: skip
    assert len({j.job.id for j in jobs}) == 4
    assert all(not m.ephemeral for m in posted)


async def test_permutations_no_runs_nothing(harness: Harness) -> None:
    h = harness
    await h.start()
    question, _, no = await confirmation(h, "a {red, blue} bird")

    press = await h.press(question, no)

    callback = await h.fake.wait_for_callback(press)
    assert callback.json["data"]["content"] == "No jobs were started."
    assert h.engine.jobs() == ()
    assert h.bot.store.user_jobs(str(h.tester)) == []


async def test_permutations_count_against_the_limits(harness: Harness) -> None:
    h = harness
    await h.start(limits=LimitsConfig(max_running_per_user=1, max_queued_per_user=1))

    refused = await h.private_reply(await h.imagine("a {red, blue, green} bird"))

    assert refused.startswith("**Queue full**")
    assert "this would add 3" in refused


async def test_too_many_permutations_are_refused(harness: Harness) -> None:
    h = harness
    await h.start(limits=LimitsConfig(max_jobs_per_prompt=3))

    refused = await h.private_reply(await h.imagine("a {red, blue} bird --repeat 2"))

    assert refused == (
        "**Too many jobs**\nthis prompt makes 4 jobs (permutations × --repeat); the limit is 3"
    )


class StubDeliveries:
    """Counts the jobs a confirmation starts (whichever way it starts them)."""

    def __init__(self) -> None:
        self.started: list[Job] = []

    async def submit(self, interaction: Any, jobs: list[Job]) -> tuple[Admission, list[Submitted]]:
        self.started += jobs
        return Admission(True), [Submitted(job, None) for job in jobs]  # type: ignore[arg-type]

    async def post(self, interaction: Any, submitted: Submitted) -> None:
        await asyncio.sleep(0)

    async def launch(self, interaction: Any, job: Job, note: str = "") -> None:
        self.started.append(job)

    async def tell(self, interaction: Any, admission: str, notes: Any) -> None:
        await asyncio.sleep(0)


def stub_press(user_id: int) -> Any:
    async def answer(**kwargs: Any) -> None:
        await asyncio.sleep(0)  # a request: other tasks run meanwhile

    response = SimpleNamespace(edit_message=answer, defer=answer)
    followup = SimpleNamespace(send=answer)
    return SimpleNamespace(
        id=1, user=SimpleNamespace(id=user_id), channel_id=5, response=response, followup=followup
    )


@pytest.mark.parametrize("second", ["yes", "no"])
async def test_a_quick_second_press_on_the_confirmation_does_nothing(second: str) -> None:
    jobs = [
        imagine_job(parse_prompt(f"a {colour} bird"), model="tiny", owner="7")
        for colour in ("red", "blue")
    ]
    deliveries = StubDeliveries()
    bot = SimpleNamespace(
        deliveries=deliveries,
        config=SimpleNamespace(limits=LimitsConfig()),
        engine=SimpleNamespace(jobs=lambda owner=None: (), position=lambda job_id: None),
    )
    view = ConfirmJobs(bot, stub_press(7), jobs)  # type: ignore[arg-type]
    buttons = {"yes": view.yes, "no": view.no}

    await asyncio.gather(
        view.yes.callback(stub_press(7)),  # type: ignore[call-arg]
        buttons[second].callback(stub_press(7)),  # type: ignore[call-arg]
    )

    assert deliveries.started == jobs  # once each, not twice
