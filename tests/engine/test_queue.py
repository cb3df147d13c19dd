"""The fair queue: owners take turns; first come, first served within one owner."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.jobs import Job, imagine_job
from engine.prompt import parse_prompt
from engine.queue import FairQueue


def job(owner: str) -> Job:
    return imagine_job(parse_prompt("a fox"), model="tiny", owner=owner)


def owners(queue: FairQueue) -> str:
    return "".join(j.owner for j in queue.order())


def test_owners_take_turns() -> None:
    queue = FairQueue()
    for owner in "aaab":
        queue.put(job(owner))

    assert owners(queue) == "abaa"
    served = "".join(queue.get_nowait().owner for _ in range(4))  # type: ignore[union-attr]
    assert served == "abaa"


def test_a_newcomer_waits_behind_one_job_of_each_owner_already_waiting() -> None:
    queue = FairQueue()
    for owner in "aabbc":
        queue.put(job(owner))
    queue.get_nowait()  # a's first starts
    queue.put(job("d"))

    assert owners(queue) == "bcadb"


def test_order_matches_what_get_serves() -> None:
    queue = FairQueue()
    jobs = [job(owner) for owner in "abcaabcb"]
    for j in jobs:
        queue.put(j)

    predicted = queue.order()
    assert [queue.get_nowait() for _ in jobs] == predicted
    assert queue.get_nowait() is None and len(queue) == 0


def test_remove_takes_a_job_out_and_an_empty_owner_loses_their_turn() -> None:
    queue = FairQueue()
    a, b, a2 = job("a"), job("b"), job("a")
    for j in (a, b, a2):
        queue.put(j)

    assert queue.remove(b.id) == b
    assert queue.remove(b.id) is None
    assert queue.order() == [a, a2]


async def test_get_waits_for_a_job() -> None:
    queue = FairQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()

    queue.put(first := job("a"))
    assert await asyncio.wait_for(waiter, 1) == first


def test_clear_returns_everything_in_order() -> None:
    queue = FairQueue()
    jobs = [job(owner) for owner in "aab"]
    for j in jobs:
        queue.put(j)

    assert queue.clear() == [jobs[0], jobs[2], jobs[1]]
    assert len(queue) == 0


def test_the_owner_just_served_waits_behind_others_who_arrive_later() -> None:
    queue = FairQueue()
    queue.put(job("a"))
    queue.get_nowait()  # a's job starts at once; a has nothing queued
    queue.put(job("a"))
    queue.put(job("a"))
    queue.put(job("b"))  # b arrives after a queued more

    assert owners(queue) == "baa"
    assert "".join(queue.get_nowait().owner for _ in range(3)) == "baa"  # type: ignore[union-attr]


def test_an_owner_served_long_ago_keeps_their_place() -> None:
    queue = FairQueue()
    queue.put(job("a"))
    queue.get_nowait()
    queue.put(job("c"))
    queue.get_nowait()  # c was served last, not a
    queue.put(job("a"))
    queue.put(job("b"))

    assert owners(queue) == "ab"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("pgrfc"), st.sampled_from("abc")), max_size=40))
def test_place_is_always_the_place_in_order(steps: list[tuple[str, str]]) -> None:
    # place() is worked out once per change (the queue limits ask it of every job on every
    # /imagine): after any mix of changes it must still say what order() says.
    queue = FairQueue()
    seen: list[Job] = []
    for action, owner in steps:
        if action == "p":
            seen.append(job(owner))
            queue.put(seen[-1])
        elif action == "f":
            seen.append(job(owner))
            queue.put_first(seen[-1])
        elif action == "g":
            queue.get_nowait()
        elif action == "r" and seen:
            queue.remove(seen[len(seen) // 2].id)
        elif action == "c":
            queue.clear()
        order = [queued.id for queued in queue._work_out_order()]  # from scratch, no cache
        assert [queued.id for queued in queue.order()] == order
        for each in seen:
            assert queue.place(each.id) == (order.index(each.id) + 1 if each.id in order else 0)
