"""The signed links of the Vary (Region) editor: who may edit which image, for an hour, once.

A token is a `RegionClaim` signed with itsdangerous (HMAC, timestamped). The signature makes it
unforgeable and dates it; the claim's nonce, recorded in the Store when a job is accepted,
makes it one-use (see bot/web.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

log = logging.getLogger(__name__)

__all__ = [
    "TOKEN_TTL_S",
    "ExpiredToken",
    "ForgedToken",
    "RegionClaim",
    "RegionTokens",
    "TokenError",
    "UsedToken",
    "load_secret",
]

TOKEN_TTL_S = 3600  # a link works for an hour after it was given
SALT = "imagine-bot.vary-region"  # a token signed for another use of the secret is refused
SECRET_FILE = "web-secret"


def _new_nonce() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class RegionClaim:
    """What a link allows: its user may redraw a region of image `index` of job `job_id`; the
    result goes to the channel. Each claim has its own nonce unless one is given."""

    job_id: str
    index: int  # which image of the job (0-3 for a grid; 0 for an upscale)
    user_id: str
    channel_id: int
    guild_id: int | None  # None: a direct message
    nonce: str = field(default_factory=_new_nonce)


class TokenError(Exception):
    """A token that does not allow anything; the message is for the user."""


class ForgedToken(TokenError):
    """Not signed with our secret (or garbled on the way)."""


class ExpiredToken(TokenError):
    """Ours, but older than TOKEN_TTL_S."""


class UsedToken(TokenError):
    """Ours and in time, but a job was already made with it."""


class _ClockSigner(TimestampSigner):
    """itsdangerous' timestamp signer, on an injected clock (tests turn it forward)."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class RegionTokens:
    def __init__(
        self, secret: str, *, ttl_s: int = TOKEN_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        if not secret:
            raise ValueError("the token secret is empty")
        self.ttl_s = ttl_s
        self._serializer = URLSafeTimedSerializer(
            secret, salt=SALT, signer=_ClockSigner, signer_kwargs={"clock": clock}
        )

    def issue(self, claim: RegionClaim) -> str:
        # A list, not a dict: the link is shorter (Discord caps a button's URL at 512).
        fields = [claim.job_id, claim.index, claim.user_id, claim.channel_id, claim.guild_id]
        return self._serializer.dumps([*fields, claim.nonce])

    def read(self, token: str) -> RegionClaim:
        """The claim of a genuine token in time; ForgedToken or ExpiredToken otherwise. Whether
        it was used is the Store's to say."""
        try:
            data = self._serializer.loads(token, max_age=self.ttl_s)
        except SignatureExpired:  # checked after the signature: an expired token is genuine
            raise ExpiredToken(
                "This link has expired (links last an hour). Press 🖌️ Vary (Region) again."
            ) from None
        except BadSignature:  # BadPayload and BadTimeSignature included
            raise ForgedToken("This link is not valid. Press 🖌️ Vary (Region) again.") from None
        claim = _claim(data)
        if claim is None:  # signed by us, so only a bug (or another version) writes these
            log.warning("a genuine region token with a payload of the wrong shape: %r", data)
            raise ForgedToken("This link is not valid. Press 🖌️ Vary (Region) again.")
        return claim


def _claim(data: Any) -> RegionClaim | None:
    if not isinstance(data, list) or len(data) != 6:
        return None
    job_id, index, user_id, channel_id, guild_id, nonce = data
    ints = (index, channel_id) if guild_id is None else (index, channel_id, guild_id)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        return None
    if not all(isinstance(v, str) and v for v in (job_id, user_id, nonce)):
        return None
    return RegionClaim(job_id, index, user_id, channel_id, guild_id, nonce)


def load_secret(configured: str, storage: Path) -> str:
    """[web].secret when set; else the one kept in <storage>/web-secret, made on first use
    (readable by the bot's user only), so links survive a restart."""
    if configured:
        return configured
    path = storage / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    storage.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    # Written whole to a private file, then linked into place: a second process starting at
    # once never reads a half-written secret, and both keep the one that was linked first.
    draft = storage / f".{SECRET_FILE}.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        os.link(draft, path)
    except FileExistsError:
        return _read_secret(path)
    finally:
        draft.unlink(missing_ok=True)
    log.info("made a new secret for the editor's links in %s", path)
    return secret


def _read_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if not secret:
        raise ValueError(f"{path} is empty; delete it and a new secret is made")
    return secret
