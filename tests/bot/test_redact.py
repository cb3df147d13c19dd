"""Log lines never carry the bot token or an interaction token."""

from __future__ import annotations

import io
import logging

import pytest

from bot.redact import REDACTED, RedactingFormatter, redact_logs, scrub

BOT_TOKEN = "MTA5.fake-bot.token_123"
INTERACTION = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OnNlY3JldA.x-y_z"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            f"PATCH https://discord.com/api/v10/webhooks/42/{INTERACTION}/messages/@original",
            f"PATCH https://discord.com/api/v10/webhooks/42/{REDACTED}/messages/@original",
        ),
        (
            "POST /api/v10/interactions/77/other-token.abc/callback",
            f"POST /api/v10/interactions/77/{REDACTED}/callback",
        ),
        (f"'token': '{INTERACTION}', 'version': 1", f"'token': '{REDACTED}', 'version': 1"),
        (f"Authorization: Bot {BOT_TOKEN}", f"Authorization: Bot {REDACTED}"),
        ("nothing secret here /webhooks/", "nothing secret here /webhooks/"),
    ],
)
def test_scrub(line: str, expected: str) -> None:
    assert scrub(line, frozenset({BOT_TOKEN})) == expected


def test_every_handler_redacts_messages_arguments_and_tracebacks() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        redact_logs(frozenset({BOT_TOKEN}))
        log = logging.getLogger("discord.http")
        log.debug("PATCH /webhooks/1/%s with %s", INTERACTION, BOT_TOKEN)
        try:
            raise RuntimeError(f"refused: token {BOT_TOKEN}")
        except RuntimeError:
            log.exception("failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    text = stream.getvalue()
    assert isinstance(handler.formatter, RedactingFormatter)
    assert BOT_TOKEN not in text and INTERACTION not in text
    assert text.startswith(f"DEBUG discord.http: PATCH /webhooks/1/{REDACTED} with {REDACTED}")
    assert f"RuntimeError: refused: token {REDACTED}" in text
