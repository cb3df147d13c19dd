"""Midjourney's tools under one image, pressed over the wire with the real tiny engine:
🔍 Zoom Out 2x / 1.5x, Custom Zoom, ↔️ Make Square, ⬅️ ➡️ ⬆️ ⬇️, 🖌️ Vary (Region) (the cells
path: no web editor is configured here), remix, and a restart in between."""

from __future__ import annotations

import io

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from bot.store import JobStatus, Store, UserSettings
from bot.tools import NOTHING_TO_ZOOM
from engine.jobs import Direction, ImageRef, JobKind, Tool
from tests.discord.helpers import Harness, buttons, eventually, harness, image_of, job_id_of, rows
from tests.fake_discord import FakeInteraction, StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def h_grid(harness: Harness) -> tuple[Harness, StoredMessage]:
    """A started bot and a finished (square) grid of "a quiet harbor"."""
    await harness.start()
    return harness, await harness.grid("a quiet harbor")


async def pick(h: Harness, grid: StoredMessage, number: int) -> StoredMessage:
    press = await h.press(grid, f"mj:u:{number}:{job_id_of(grid)}")
    return await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)


async def result_of(h: Harness, press: FakeInteraction) -> StoredMessage:
    message = await h.job_message(press)
    finished = await h.finished(message.id)
    assert "(seed " in finished.content, finished.content
    return finished


def source_image(h: Harness, grid: StoredMessage, number: int) -> np.ndarray:
    result = h.stored(grid).result
    assert result is not None
    return np.asarray(Image.open(result.images[number - 1]).convert("RGB"))


def images_of(h: Harness, message: StoredMessage) -> list[np.ndarray]:
    result = h.stored(message).result
    assert result is not None and len(result.images) == 4
    return [np.asarray(Image.open(path).convert("RGB")) for path in result.images]


async def test_a_single_image_has_midjourneys_tools_in_its_order(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    job_id = job_id_of(grid)

    single = await pick(h, grid, 2)

    assert buttons(single) == [
        ("Vary (Subtle)", "🪄", f"mj:vs:2:{job_id}"),
        ("Vary (Strong)", "🪄", f"mj:vt:2:{job_id}"),
        ("Vary (Region)", "🖌️", f"mj:vr:2:{job_id}"),
        ("Upscale (Subtle)", None, f"mj:us:2:{job_id}"),
        ("Upscale (Creative)", None, f"mj:uc:2:{job_id}"),
        ("Zoom Out 2x", "🔍", f"mj:z2:2:{job_id}"),
        ("Zoom Out 1.5x", "🔍", f"mj:z1:2:{job_id}"),
        ("Custom Zoom", "🔍", f"mj:zc:2:{job_id}"),
        (None, "⬅️", f"mj:pl:2:{job_id}"),
        (None, "➡️", f"mj:pr:2:{job_id}"),
        (None, "⬆️", f"mj:pu:2:{job_id}"),
        (None, "⬇️", f"mj:pd:2:{job_id}"),
    ]  # a square image: no Make Square
    assert len(rows(single)) == 4


async def test_zoom_out_2x_shrinks_the_image_into_the_middle_of_the_same_canvas(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 1)

    finished = await result_of(h, await h.press(single, f"mj:z2:1:{job_id_of(grid)}"))

    assert finished.content.startswith(f"**a quiet harbor** - Zoom Out by <@{h.tester}> (seed ")
    job = h.stored(finished).job
    assert job.kind is JobKind.EDIT and job.source == ImageRef(job_id_of(grid), 0)
    assert job.edit is not None and (job.edit.tool, job.edit.zoom) == (Tool.ZOOM, 2.0)
    source = source_image(h, grid, 1)
    shrunk = np.asarray(Image.fromarray(source).resize((64, 64), Image.Resampling.LANCZOS))
    for image in images_of(h, finished):
        assert image.shape == source.shape  # the same size and ratio
        middle = image[32:96, 32:96].astype(int)
        assert np.abs(middle[4:-4, 4:-4] - shrunk[4:-4, 4:-4].astype(int)).mean() < 3
    # The new border was drawn, not left as it was: the four images differ there.
    first, second = images_of(h, finished)[:2]
    assert np.abs(first[:16].astype(int) - second[:16].astype(int)).mean() > 1
    assert [c for c in finished.custom_ids if c.startswith("mj:u:1:")] == [f"mj:u:1:{job.id}"]


@pytest.mark.parametrize(
    ("op", "direction", "size"),
    [("pr", Direction.RIGHT, (192, 128)), ("pu", Direction.UP, (128, 192))],
)
async def test_pan_grows_the_canvas_by_half_on_that_side_keeping_every_pixel(
    h_grid: tuple[Harness, StoredMessage], op: str, direction: Direction, size: tuple[int, int]
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 3)

    finished = await result_of(h, await h.press(single, f"mj:{op}:3:{job_id_of(grid)}"))

    word = direction.value.title()
    assert finished.content.startswith(f"**a quiet harbor** - Pan {word} by <@{h.tester}>")
    source = source_image(h, grid, 3)
    for image in images_of(h, finished):
        assert (image.shape[1], image.shape[0]) == size
        kept = image[:, :128] if direction is Direction.RIGHT else image[64:, :]
        # Outside the seam the source's pixels are exactly kept.
        if direction is Direction.RIGHT:
            assert np.array_equal(kept[:, :112], source[:, :112])
        else:
            assert np.array_equal(kept[16:], source[16:])
    assert image_of(finished.attachments[0].data).size == (size[0] * 2, size[1] * 2)  # the grid


async def test_make_square_is_offered_on_a_wide_image_and_keeps_its_long_side(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    grid = await h.grid("a long pier --ar 2:1")
    single = await pick(h, grid, 1)
    source = source_image(h, grid, 1)
    height, width = source.shape[:2]
    assert width > height
    assert ("Make Square", "↔️", f"mj:sq:1:{job_id_of(grid)}") in buttons(single)

    finished = await result_of(h, await h.press(single, f"mj:sq:1:{job_id_of(grid)}"))

    assert finished.content.startswith(f"**a long pier --ar 2:1** - Make Square by <@{h.tester}>")
    top = (width - height) // 2
    for image in images_of(h, finished):
        assert image.shape[:2] == (width, width)
        band = image[top : top + height]
        assert np.array_equal(band[16:-16], source[16:-16])


async def test_custom_zoom_opens_the_prompt_with_zoom_2_and_runs_the_edited_value(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 1)

    press = await h.press(single, f"mj:zc:1:{job_id_of(grid)}")

    callback = await h.fake.wait_for_callback(press)
    assert callback.json["type"] == 9  # a modal, remix mode or not
    assert callback.json["data"]["title"] == "Custom Zoom"
    [field] = [c for c in callback.components if c["type"] == 4]
    assert field["value"] == "a quiet harbor --zoom 2"
    submit = await h.fake.push_modal_submit(
        press, {field["custom_id"]: "a misty harbor --zoom 1.5"}
    )
    message = await h.job_message(submit)
    assert message.content == (
        f"**a misty harbor --zoom 1.5** - Zoom Out by <@{h.tester}> (Waiting to start)"
    )
    job = h.stored(message).job
    assert job.edit is not None and (job.edit.zoom, job.edit.aspect) == (1.5, None)
    assert job.request.prompt == "a misty harbor"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("a quiet harbor --zoom 3", "**Invalid parameter**\n--zoom must be a number from 1 to 2"),
        ("a quiet harbor --zoom 1", f"**Invalid parameter**\n{NOTHING_TO_ZOOM}"),
        ("a quiet harbor --zoom wide", "**Invalid parameter**\n--zoom must be a number"),
    ],
)
async def test_custom_zoom_refuses_a_bad_zoom_privately(
    h_grid: tuple[Harness, StoredMessage], text: str, answer: str
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 1)
    before = len(h.engine.jobs())

    submit = await h.remix(single, f"mj:zc:1:{job_id_of(grid)}", text)

    assert (await h.private_reply(submit)).startswith(answer)
    assert len(h.engine.jobs()) == before


async def test_custom_zoom_1_with_a_new_ar_extends_the_canvas_to_that_shape(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 1)

    submit = await h.remix(
        single, f"mj:zc:1:{job_id_of(grid)}", "a quiet harbor --zoom 1 --ar 16:9"
    )
    finished = await h.finished((await h.job_message(submit)).id)

    job = h.stored(finished).job
    assert job.edit is not None and (job.edit.zoom, job.edit.aspect) == (1.0, (16, 9))
    for image in images_of(h, finished):
        height, width = image.shape[:2]
        assert abs(width / height / (16 / 9) - 1) < 0.02


async def test_in_remix_mode_a_pan_opens_the_prompt_first(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 2)
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))
    try:
        submit = await h.remix(single, f"mj:pl:2:{job_id_of(grid)}", "a harbor at night")
        message = await h.job_message(submit)
    finally:
        h.bot.store.save_settings(str(h.tester), UserSettings())

    assert message.content == (
        f"**a harbor at night** - Pan Left by <@{h.tester}> (Waiting to start)"
    )
    job = h.stored(message).job
    assert job.edit is not None and job.edit.direction is Direction.LEFT


async def test_tools_work_on_their_own_results_zoom_after_zoom(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    zoomed = await result_of(h, await h.press(await pick(h, grid, 1), f"mj:z1:1:{job_id_of(grid)}"))
    again = await pick(h, zoomed, 4)
    assert f"mj:z1:4:{job_id_of(zoomed)}" in again.custom_ids

    finished = await result_of(h, await h.press(again, f"mj:pd:4:{job_id_of(zoomed)}"))

    job = h.stored(finished).job
    assert job.source == ImageRef(job_id_of(zoomed), 3)
    assert all(image.shape[:2] == (192, 128) for image in images_of(h, finished))


async def test_vary_region_without_a_web_editor_offers_cells_then_the_prompt(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 1)

    press = await h.press(single, f"mj:vr:1:{job_id_of(grid)}")

    menu = await h.new_message(
        lambda m: m.interaction_id == press.id and not m.loading and bool(m.attachments)
    )
    assert menu.ephemeral
    overlay = Image.open(io.BytesIO(menu.attachments[0].data))
    assert overlay.size == (128, 128)
    [select] = [c for row in menu.components for c in row["components"] if c["type"] == 3]
    assert [o["value"] for o in select["options"]][:3] == ["A1", "B1", "C1"]
    assert len(select["options"]) == 25  # 5 × 5 cells on a square
    chosen = await h.fake.push_component(menu, select["custom_id"], values=["A1", "B1"])
    callback = await h.fake.wait_for_callback(chosen)
    assert callback.json["type"] == 9 and callback.json["data"]["title"] == "Vary (Region)"
    [field] = [c for c in callback.components if c["type"] == 4]
    assert field["value"] == "a quiet harbor"
    submit = await h.fake.push_modal_submit(chosen, {field["custom_id"]: "a harbor with a moon"})
    finished = await h.finished((await h.job_message(submit)).id)

    assert finished.content.startswith(
        f"**a harbor with a moon** - Vary (Region) by <@{h.tester}> (seed "
    )
    job = h.stored(finished).job
    assert job.edit is not None and job.edit.tool is Tool.REGION and job.edit.mask
    source = source_image(h, grid, 1)
    bottom, right = 128 // 5, 2 * 128 // 5  # A1 and B1: the top row's first two cells
    for image in images_of(h, finished):
        assert image.shape == source.shape
        assert np.array_equal(image[bottom:], source[bottom:])  # outside the mask: exact
        assert np.array_equal(image[:, right:], source[:, right:])
    redrawn = images_of(h, finished)[0][:bottom, :right].astype(int)
    assert np.abs(redrawn - source[:bottom, :right].astype(int)).mean() > 1


async def test_a_pan_pressed_before_a_restart_finishes_after_it(harness: Harness) -> None:
    h = harness
    bot = await h.start()
    grid = await h.grid("before the restart")
    single = await pick(h, grid, 1)
    blocker = await h.blocker()
    message = await h.job_message(await h.press(single, f"mj:pr:1:{job_id_of(grid)}"))
    pan = h.stored(message).job
    await h.stop(bot)
    for job in (pan.id, job_id_of(blocker)):
        await h.engine.cancel(job)  # the shared engine forgets them, as a new one would
    await eventually(lambda: not {pan.id, job_id_of(blocker)} & {j.id for j in h.engine.jobs()})
    with Store(h.config().database) as store:
        store.set_status(job_id_of(blocker), JobStatus.CANCELLED)
        store.set_delivered(job_id_of(blocker))

    await h.start()

    finished = await h.finished(message.id)
    assert finished.content.startswith(f"**before the restart** - Pan Right by <@{h.tester}>")
    assert all(image.shape[:2] == (128, 192) for image in images_of(h, finished))
