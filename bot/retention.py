"""Retention: `[storage] keep_days` and `max_gb` prune the oldest images, hourly, in a thread.

A pruned job stays in the database (and in /info); its buttons answer privately that the image
has expired. The sources of jobs still queued or running are never pruned under them. Image
prompts (storage/inputs) go after `keep_days` without use (a job reading one renews it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.store import Store
from engine.config import EngineConfig
from engine.storage import prune, prune_inputs

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0


def prune_once(config: EngineConfig, store: Store) -> list[str]:
    """One pass; the ids of the jobs whose images were deleted."""
    unfinished = store.unfinished_jobs()
    protect = {stored.job.source.job_id for stored in unfinished if stored.job.source}
    removed = prune(
        config.images_dir,
        keep_days=config.keep_days,
        max_bytes=int(config.max_gb * 1024**3),
        protect=protect,
    )
    if removed:
        logger.info("retention: deleted the images of %d job(s)", len(removed))
    in_use = {digest for stored in unfinished for digest in stored.job.stored_images}
    inputs = prune_inputs(config.inputs_dir, keep_days=config.keep_days, protect=in_use)
    if inputs:
        logger.info(
            "retention: deleted %d image prompt(s) unused for %g days", inputs, config.keep_days
        )
    return removed


async def keep_pruning(bot: ImagineBot, interval_s: float = PRUNE_INTERVAL_S) -> None:
    """Until cancelled: a pass now, then one every `interval_s`."""
    config = bot.config.engine
    while True:
        try:
            await asyncio.to_thread(prune_once, config, bot.store)
        except Exception:  # a pass that fails (a file in use, …) must not end retention
            logger.exception("retention pass failed")
        await asyncio.sleep(interval_s)
