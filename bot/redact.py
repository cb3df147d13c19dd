"""No log line carries a secret: the bot token, or an interaction's token (in a webhook URL, an
interaction payload logged by discord.py at DEBUG, or a traceback).

Installed on the root logger's handlers by the entry point (bot/cli.py), so it covers every
library's records, tracebacks included.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# Interaction tokens are base64 of "interaction:…"; they also sit in webhook and callback paths.
_TOKENS = re.compile(
    r"aW50ZXJhY3Rpb246[A-Za-z0-9_\-.]+"
    r"|(?<=/webhooks/)(\d+/)[A-Za-z0-9_\-.]+"
    r"|(?<=/interactions/)(\d+/)[A-Za-z0-9_\-.]+"
)


def scrub(text: str, secrets: frozenset[str] = frozenset()) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _TOKENS.sub(lambda m: (m[1] or m[2] or "") + REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """A Formatter whose output (message, arguments and traceback) has its secrets removed."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self.secrets: frozenset[str] = frozenset()

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self.secrets)


def redact_logs(secrets: frozenset[str]) -> None:
    """Make every handler of the root logger redact `secrets` and interaction tokens."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if not isinstance(formatter, RedactingFormatter):
            fmt = formatter._fmt if formatter is not None else None
            formatter = RedactingFormatter(fmt or "%(message)s")
            handler.setFormatter(formatter)
        formatter.secrets = frozenset(s for s in secrets if s)
