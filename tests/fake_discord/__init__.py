"""A fake Discord REST API and gateway for driving discord.py bots in tests (see server.py)."""

from .server import (
    ApiError,
    EscapedRequestError,
    FakeDiscord,
    FakeInteraction,
    Part,
    RecordedRequest,
    StoredAttachment,
    StoredMessage,
    UploadedFile,
    walk_components,
)

__all__ = [
    "ApiError",
    "EscapedRequestError",
    "FakeDiscord",
    "FakeInteraction",
    "Part",
    "RecordedRequest",
    "StoredAttachment",
    "StoredMessage",
    "UploadedFile",
    "walk_components",
]
