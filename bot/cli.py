"""`imagine-bot` / `python -m bot`: `run` starts the Discord bot, `local` makes one grid without
Discord. The only place that configures logging."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from bot.config import TOKEN_ENV, ConfigError, ImagesConfig, load_config
from bot.redact import redact_logs

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagine-bot", description="A self-hosted Midjourney for Discord."
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the Discord bot")
    run.add_argument("--config", type=Path, help="config.toml (default: built-in settings)")

    local = commands.add_parser("local", help="make one grid from a prompt, without Discord")
    local.add_argument("prompt", help='an /imagine prompt, e.g. "a red fox --ar 3:2 --seed 42"')
    local.add_argument("--out", type=Path, default=Path("grid.png"), help="where to write the grid")
    local.add_argument("--model", help="a model preset (overrides --v and [engine].model)")
    local.add_argument("--config", type=Path, help="config.toml (default: built-in settings)")
    local.add_argument(
        "--image",
        action="append",
        default=[],
        help="an image prompt file or URL (repeatable); --iw in the prompt sets its weight",
    )
    tools = local.add_argument_group(
        "editing an image", "--from IMAGE with exactly one tool; the prompt is the edit's prompt"
    )
    tools.add_argument("--from", dest="source", type=Path, help="the image (PNG/JPEG) to edit")
    tools.add_argument(
        "--zoom-out", metavar="FACTOR", help="Zoom Out by 1–2 (the prompt's --ar sets the shape)"
    )
    tools.add_argument("--pan", metavar="SIDE", help="Pan: left, right, up or down")
    tools.add_argument("--make-square", action="store_true", help="Make Square")
    tools.add_argument(
        "--region", type=Path, metavar="MASK", help="Vary (Region): a mask PNG, white = redraw"
    )

    bench = commands.add_parser("bench", help="time the engine's paths and print a table")
    bench.add_argument("--model", default="tiny", help="a model preset (default: tiny)")
    bench.add_argument("--repeats", type=int, default=3, help="runs per row (the median is shown)")
    bench.add_argument("--config", type=Path, help="config.toml (default: built-in settings)")
    bench.add_argument(
        "--load",
        action="store_true",
        help="instead: the bot under load against a fake Discord (needs a source checkout)",
    )
    bench.add_argument(
        "--vs-diffusers",
        action="store_true",
        help="instead: the engine's whole path against direct diffusers calls, same weights",
    )
    bench.add_argument(
        "--cold-start",
        action="store_true",
        help="instead: launch to the first grid, twice (the second with what the first cached)",
    )
    bench.add_argument(
        "--batching",
        action="store_true",
        help="instead: 8 grids from 8 users, batched (--batch-pixels) and one at a time",
    )
    bench.add_argument(
        "--batch-pixels",
        type=int,
        default=0,
        help="--batching: the budget (default: [engine] batch_pixels, else 1048576)",
    )
    bench.add_argument(
        "--size", type=int, default=128, help="--vs-diffusers, --batching: image side"
    )
    bench.add_argument("--steps", type=int, default=20, help="--vs-diffusers, --batching: steps")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument("--users", type=int, default=50, help="--load: users (default: 50)")
    bench.add_argument("--jobs", type=int, default=5, help="--load: jobs each sends (default: 5)")
    bench.add_argument("--rounds", type=int, default=2, help="--load: bursts (default: 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    # The token now lives in the config: no child process (the engine) inherits it, and no log
    # line shows it (nor any interaction's token).
    os.environ.pop(TOKEN_ENV, None)
    redact_logs(frozenset({config.discord.token}))
    if args.command == "local":
        from engine.local import EXIT_USAGE, UsageError, local_edit, run_local

        try:
            edit = local_edit(args.source, args.zoom_out, args.pan, args.make_square, args.region)
        except UsageError as error:
            print(f"Usage: {error}", file=sys.stderr)
            return EXIT_USAGE
        return asyncio.run(
            run_local(
                config.engine,
                args.prompt,
                args.out,
                args.model,
                images=args.image,
                fetch=_fetcher(config.images),
                edit=edit,
            )
        )
    if args.command == "bench" and args.load:
        return _bench_load(args.users, args.jobs, args.rounds, as_json=args.json)
    if args.command == "bench" and args.vs_diffusers:
        from engine.bench import overhead_table, run_overhead

        figures = run_overhead(
            config.engine, args.model, args.size, args.steps, repeats=args.repeats
        )
        print(json.dumps(figures) if args.json else overhead_table(figures, args.model))
        return 0
    if args.command == "bench" and args.batching:
        from engine.bench import batching_table, run_batching

        budget = args.batch_pixels or config.engine.batch_pixels or 1024 * 1024
        figures = run_batching(
            replace(config.engine, batch_pixels=budget),
            args.model,
            args.size,
            args.steps,
            repeats=args.repeats,
        )
        print(json.dumps(figures) if args.json else batching_table(figures, args.model))
        return 0
    if args.command == "bench" and args.cold_start:
        from engine.bench import cold_start_table, device_name, run_cold_start

        runs = run_cold_start(config.engine, args.model)
        print(
            json.dumps({"model": args.model, "device": device_name(), "runs": runs})
            if args.json
            else cold_start_table(runs, args.model)
        )
        return 0
    if args.command == "bench":
        from engine.bench import bench_table, run_bench

        figures = run_bench(config.engine, args.model, args.repeats)
        print(json.dumps(figures) if args.json else bench_table(figures))
        return 0
    from bot.app import run_bot

    return run_bot(config)


if __name__ == "__main__":
    sys.exit(main())


def _bench_load(users: int, jobs: int, rounds: int, *, as_json: bool) -> int:
    """The load scenario of tests/discord/load.py (the fake Discord lives with the tests)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "tests" / "fake_discord").is_dir() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from tests.discord.load import run_load
    except ImportError as error:
        print(f"bench --load needs a source checkout with the dev extra ({error})", file=sys.stderr)
        return 2
    report = asyncio.run(run_load(users=users, jobs_per_user=jobs, rounds=rounds))
    print(json.dumps(report.figures()) if as_json else report.table())
    return 0


def _fetcher(images: ImagesConfig) -> Callable[[str], Awaitable[bytes]]:
    """`imagine-bot local`'s image links, fetched as the bot fetches them (the same checks)."""
    from bot.fetch import FetchError, fetch_image
    from engine.local import ImageUnavailableError

    limits = images.limits()

    async def fetch(url: str) -> bytes:
        try:
            return (await fetch_image(url, limits)).png
        except FetchError as error:
            raise ImageUnavailableError(str(error)) from None

    return fetch
