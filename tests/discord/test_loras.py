"""LoRAs through the real bot and engine process: `--lora NAME[:WEIGHT]` picks a [loras.NAME]
of the config (the tests' engine has `ink`, a LoRA built offline for the tiny model)."""

from __future__ import annotations

import pytest

from engine.storage import read_metadata
from tests.discord.helpers import Harness, dm_to, harness, job_id_of

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_prompt_draws_with_the_lora_it_names_and_rerolls_keep_it(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    plain = h.stored(await h.grid("a harbour at dawn --seed 3"))
    grid = await h.grid("a harbour at dawn --seed 3 --lora ink")

    stored = h.stored(grid)
    assert stored.result is not None and plain.result is not None
    meta = read_metadata(stored.result.images[0])
    assert meta["loras"] == [{"name": "ink", "weight": 0.8}]  # its default weight
    assert meta["prompt"].startswith("a harbour at dawn, ink wash")  # and its trigger words
    assert stored.result.images[0].read_bytes() != plain.result.images[0].read_bytes()
    await h.fake.push_reaction(grid, "✉️")  # the DM says which LoRAs, at which weights
    assert "· LoRAs `ink` 0.8 ·" in (await dm_to(h, h.tester)).content

    reroll = await h.press(grid, f"mj:r:0:{job_id_of(grid)}")
    again = await h.new_message(
        lambda m: m.interaction_id == reroll.id and "(seed " in m.content, timeout=90.0
    )
    assert h.stored(again).job.request.loras == stored.job.request.loras


async def test_an_unknown_lora_is_an_invalid_parameter_naming_those_there_are(
    harness: Harness,
) -> None:
    h = harness
    await h.start()

    reply = await h.private_reply(await h.imagine("a harbour --lora pixel-art"))

    assert reply == (
        "**Invalid parameter**\n--lora: there is no LoRA called `pixel-art` here; "
        "the LoRAs are: `ink`"
    )
    assert h.bot.store.user_jobs(str(h.tester)) == []
