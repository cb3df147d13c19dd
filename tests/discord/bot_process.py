"""`python -m tests.discord.bot_process API GATEWAY CDN ARGS…`: the real `imagine-bot ARGS…`, with
discord.py pointed at a fake Discord, so that tests can send real signals to a real bot process
(tests/discord/test_signals.py)."""

from __future__ import annotations

import sys

import discord.asset
import discord.gateway
import discord.http
import yarl

from bot.cli import main


def run(argv: list[str]) -> int:
    api, gateway, cdn, *args = argv
    discord.http.Route.BASE = api
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    discord.asset.Asset.BASE = cdn
    return main(args)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
