"""A fake Discord (REST API + gateway websocket) on 127.0.0.1 that drives discord.py's real code.

One guild with two text channels, roles and members; a bot account whose user id is the
application id. Every HTTP request is recorded (method, path, query, JSON body, multipart parts) and
the server keeps the messages as a user would see them, attachments included (their bytes are served
back at the attachment URL). Tests push interactions over the gateway and wait for requests or
messages with :meth:`FakeDiscord.wait_for` / :meth:`FakeDiscord.wait_for_message`.

Route names (``RecordedRequest.route``, and the keys :meth:`FakeDiscord.fail_next` takes):
``users_me``, ``application``, ``gateway``, ``gateway_bot``, ``commands_get``, ``commands_put``,
``commands_post``, ``interaction_callback``, ``webhook_execute``, ``webhook_message_get``,
``webhook_message_edit``, ``webhook_message_delete``, ``channel_get``, ``channel_history``,
``channel_message_create``, ``channel_message_get``, ``channel_message_edit``,
``channel_message_delete``, ``typing``, ``reaction_add``, ``reaction_remove``, ``dm_create``,
``guild_member_get``, ``attachment``, ``unknown``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import yarl
from aiohttp import web

from . import payloads
from .payloads import (
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Payload,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[["RecordedRequest"], Awaitable[Any]]

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway-ws"
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
MAX_REQUEST_BYTES = 512 * 1024 * 1024
# Gateway opcodes.
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_RESUME = 6
OP_INVALID_SESSION = 9
OP_REQUEST_MEMBERS = 8
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11


class ApiError(Exception):
    """An error answer, shaped like Discord's: ``{"message": ..., "code": ...}``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        extra: Payload | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.body: Payload = {"message": message, "code": code, **(extra or {})}
        self.headers = headers or {}


class EscapedRequestError(RuntimeError):
    """Raised instead of sending an HTTP request to a host that is not the loopback interface."""


@dataclass
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """An HTTP request the fake received, with the answer it gave."""

    method: str
    path: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None  # the JSON body, or the parsed ``payload_json`` part of a multipart body
    parts: list[Part] = field(default_factory=list)
    body: bytes = b""
    status: int = 0
    response: Any = None
    injected: bool = False  # answered with a failure that fail_next() or flaky() injected
    answered_at: float = 0.0  # the event loop's clock when the fake answered it

    @property
    def payload(self) -> Payload:
        return self.json if isinstance(self.json, dict) else {}

    @property
    def files(self) -> list[Part]:
        return [part for part in self.parts if part.filename is not None]

    @property
    def components(self) -> list[Payload]:
        """Every component in the body (nested ones included), for callbacks and messages alike."""
        body = self.payload.get("data") or self.payload  # a callback wraps its message in "data"
        return list(walk_components(body.get("components") or []))


@dataclass
class StoredAttachment:
    id: int
    filename: str
    content_type: str | None
    data: bytes
    url: str
    description: str | None = None

    def payload(self, *, ephemeral: bool = False) -> Payload:
        return payloads.attachment(
            self.id,
            filename=self.filename,
            size=len(self.data),
            url=self.url,
            content_type=self.content_type,
            description=self.description,
            ephemeral=ephemeral,
        )


@dataclass
class StoredMessage:
    """A message as the fake's users see it now (edits applied in place)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: Payload
    created_at: str
    content: str = ""
    embeds: list[Payload] = field(default_factory=list)
    components: list[Payload] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    webhook_id: int | None = None
    interaction_id: int | None = None
    interaction_metadata: Payload | None = None
    edited_at: str | None = None
    reactions: list[str] = field(default_factory=list)
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while it is a deferred "Bot is thinking…" placeholder."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def buttons(self) -> list[Payload]:
        return [c for c in walk_components(self.components) if c.get("type") == 2]

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def component(self, custom_id: str) -> Payload | None:
        return next(
            (c for c in walk_components(self.components) if c.get("custom_id") == custom_id), None
        )

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author,
            "content": self.content,
            "timestamp": self.created_at,
            "edited_timestamp": self.edited_at,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.payload(ephemeral=self.ephemeral) for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.reactions:
            data["reactions"] = [_reaction(emoji) for emoji in dict.fromkeys(self.reactions)]
        return data


@dataclass
class FakeInteraction:
    """An interaction the fake pushed, and what the bot did with it."""

    id: int
    token: str
    type: int
    payload: Payload
    channel_id: int
    user_id: int
    message_id: int | None = None  # the message a component sat on
    response_type: int | None = None
    original_message_id: int | None = None
    modal: Payload | None = None  # the modal the bot answered with (callback type 9)
    choices: list[Payload] | None = None  # autocomplete answer (callback type 8)
    expired: bool = False
    dispatched_at: float = 0.0  # the event loop's clock when the fake sent it
    acked_at: float | None = None  # … and when its callback was accepted
    ephemeral: bool = False  # the callback's answer is private


@dataclass
class UploadedFile:
    """A file a user attaches to a slash command option of type attachment."""

    filename: str
    data: bytes
    content_type: str | None = None


@dataclass
class _Fault:
    status: int
    times: int
    retry_after: float
    when: Callable[[RecordedRequest], bool] | None = None  # only requests that match fail


@dataclass
class _Flaky:
    """Every ``every``-th request to a matching route fails with ``status``."""

    status: int
    every: int
    retry_after: float
    routes: frozenset[str] | None  # None: every route but GETs
    seen: int = 0


@dataclass
class _SessionState:
    """A gateway session: it outlives its connection, so that a bot can RESUME it."""

    session_id: str
    seq: int = 0
    # Dispatched while no connection was up: sent on RESUME, as Discord replays missed events.
    pending: list[tuple[int, str, Any]] = field(default_factory=list)


@dataclass
class _GatewaySession:
    ws: web.WebSocketResponse
    state: _SessionState | None = None
    identified: bool = False

    async def send(self, payload: Payload) -> None:
        await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: Any) -> None:
        assert self.state is not None
        self.state.seq += 1
        await self.send({"op": OP_DISPATCH, "t": event, "s": self.state.seq, "d": data})


def walk_components(components: list[Payload]) -> Iterator[Payload]:
    """Yield every component, depth first (action rows, sections, labels and their children)."""
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                yield from walk_components([component[key]])


def _injected(status: int, retry_after: float) -> ApiError:
    """An injected failure: a 429 as Discord sends one (discord.py checks the Via header), or
    a bare error status."""
    if status != 429:
        return ApiError(status, 0, f"{status}: injected failure")
    return ApiError(
        429,
        0,
        "You are being rate limited.",
        extra={"retry_after": retry_after, "global": False},
        headers={
            "Via": "1.1 google",
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after),
            "X-RateLimit-Scope": "user",
        },
    )


def _reaction(emoji: str) -> Payload:
    return {
        "count": 1,
        "count_details": {"burst": 0, "normal": 1},
        "me": True,
        "me_burst": False,
        "burst_colors": [],
        "emoji": {"id": None, "name": emoji},
    }


def _json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # discord.py decodes JSON only when Content-Type is exactly "application/json";
    # aiohttp's json_response() appends "; charset=utf-8".
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def _read_parts(request: web.Request) -> list[Part]:
    reader = await request.multipart()
    parts: list[Part] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader):
            raise ApiError(400, 50035, "Invalid Form Body: nested multipart")
        data = await part.read(decode=False)
        content_type = part.headers.get(aiohttp.hdrs.CONTENT_TYPE)
        parts.append(Part(part.name or "", part.filename, content_type, bytes(data)))
    return parts


async def _read_request(request: web.Request, route: str) -> RecordedRequest:
    record = RecordedRequest(
        method=request.method,
        path=request.path,
        route=route,
        params=dict(request.match_info),
        query=dict(request.query),
        headers=dict(request.headers),
    )
    if request.content_type == "multipart/form-data":
        record.parts = await _read_parts(request)
        payload_json = next((p for p in record.parts if p.name == "payload_json"), None)
        record.json = json.loads(payload_json.data) if payload_json else None
    elif request.can_read_body:
        record.body = await request.read()
        if request.content_type == "application/json" and record.body:
            record.json = json.loads(record.body)
    return record


def _form_error(detail: str) -> ApiError:
    log.warning("fake discord: rejected a message: %s", detail)
    return ApiError(400, 50035, "Invalid Form Body", extra={"errors": {"_fake": detail}})


def _validate_components(components: list[Payload], *, v2: bool) -> None:
    if not v2 and len(components) > 5:
        raise _form_error(f"{len(components)} action rows; at most 5")
    seen: set[str] = set()
    for component in walk_components(components):
        custom_id = component.get("custom_id")
        if component.get("type") == 1 and len(component.get("components") or []) > 5:
            raise _form_error("an action row holds at most 5 components")
        if component.get("type") == 2 and component.get("style") not in (5, 6) and not custom_id:
            raise _form_error("a non-link button needs a custom_id")
        if custom_id is None:
            continue
        if not 1 <= len(custom_id) <= 100:
            raise _form_error(f"custom_id must be 1-100 characters: {custom_id!r}")
        if custom_id in seen:
            raise _form_error(f"duplicate custom_id {custom_id!r}")
        seen.add(custom_id)


def _validate_fields(fields: Payload) -> None:
    if len(fields.get("content") or "") > 2000:
        raise _form_error("content is longer than 2000 characters")
    if len(fields.get("embeds") or []) > 10:
        raise _form_error("more than 10 embeds")
    flags = int(fields.get("flags") or 0)
    _validate_components(fields.get("components") or [], v2=bool(flags & FLAG_COMPONENTS_V2))


def _resolve_embed(embed: Payload, attachments: list[StoredAttachment]) -> Payload:
    """Swap ``attachment://name`` image URLs for the attachment's URL, as Discord does."""
    urls = {f"attachment://{a.filename}": a.url for a in attachments}
    resolved = dict(embed)
    for key in ("image", "thumbnail"):
        media = embed.get(key)
        if isinstance(media, dict) and media.get("url") in urls:
            url = urls[media["url"]]
            resolved[key] = {**media, "url": url, "proxy_url": url}
    return resolved


def _upload_index(part: Part) -> str | None:
    if part.filename is None or not part.name.startswith("files[") or not part.name.endswith("]"):
        return None
    return part.name[len("files[") : -1]


class FakeDiscord:
    """The fake Discord server and its state: ``await start()`` … ``await stop()``."""

    def __init__(self, *, attachment_size_limit: int = DEFAULT_ATTACHMENT_LIMIT) -> None:
        self._ids = payloads.Snowflakes()
        self.attachment_size_limit = attachment_size_limit
        self.locale = "en-US"
        self.strict = True  # check_clean() fails on unknown routes and escaped requests
        # Discord forgets an interaction not answered this long after it was sent (10062).
        self.ack_deadline_s = 3.0
        self.port = 0
        self._init_world()
        # Recorded traffic and state.
        self.requests: list[RecordedRequest] = []
        self.unknown_requests: list[RecordedRequest] = []
        self.escaped_requests: list[str] = []
        self.gateway_frames: list[Payload] = []
        self.messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.commands: dict[int | None, list[Payload]] = {}  # by guild id; None = global
        self._by_token: dict[str, FakeInteraction] = {}
        self._faults: dict[str, _Fault] = {}
        self._flaky: _Flaky | None = None
        self._sessions: list[_GatewaySession] = []
        self._session_state: _SessionState | None = None  # the last one identified
        self.resumes = 0  # sessions resumed after a dropped connection
        self.dropped = False  # drop_gateway() closed the connection and no bot resumed yet
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # -- the world: one guild, its roles, channels and members ------------------------------------

    def _init_world(self) -> None:
        self.application_id = self._ids.next()
        self.bot_token = f"fake.{self.application_id}.{secrets.token_urlsafe(24)}"
        self.bot_user = payloads.bot_user(self.application_id, "imagine-bot")
        self.owner_id = self._ids.next()
        self.guild_id = self._ids.next()
        self.member_role_id = self._ids.next()
        self.bot_role_id = self._ids.next()
        self.roles: dict[int, Payload] = {
            self.guild_id: payloads.role(
                self.guild_id, "@everyone", permissions=payloads.MEMBER_PERMISSIONS, position=0
            ),
            self.member_role_id: payloads.role(
                self.member_role_id, "Artist", permissions=payloads.MEMBER_PERMISSIONS, position=1
            ),
            self.bot_role_id: payloads.role(
                self.bot_role_id, "imagine-bot", permissions=payloads.BOT_PERMISSIONS, position=2
            ),
        }
        self.channels: dict[int, Payload] = {}
        self.channel_id = self.add_text_channel("general")
        self.other_channel_id = self.add_text_channel("imagine")
        self.users: dict[int, Payload] = {}
        self.members: dict[int, Payload] = {}
        self._add_member(payloads.user(self.owner_id, "owner"), [])
        self._add_member(self.bot_user, [self.bot_role_id])
        self.user_id = self.add_user("tester")

    def add_text_channel(self, name: str) -> int:
        channel_id = self._ids.next()
        self.channels[channel_id] = payloads.text_channel(
            channel_id, guild_id=self.guild_id, name=name, position=len(self.channels)
        )
        return channel_id

    def add_thread(self, parent_id: int, name: str) -> int:
        """A public thread in `parent_id` (add it before the bot connects: GUILD_CREATE lists
        the guild's active threads)."""
        thread_id = self._ids.next()
        self.channels[thread_id] = payloads.thread(
            thread_id,
            guild_id=self.guild_id,
            parent_id=parent_id,
            owner_id=self.owner_id,
            name=name,
        )
        return thread_id

    def add_user(self, username: str, *, roles: list[int] | None = None) -> int:
        """Add a guild member (call before the bot connects for it to be in GUILD_CREATE)."""
        user_id = self._ids.next()
        roles = [self.member_role_id] if roles is None else roles
        self._add_member(payloads.user(user_id, username), roles)
        return user_id

    def _add_member(self, user: Payload, roles: list[int]) -> None:
        self.users[int(user["id"])] = user
        self.members[int(user["id"])] = payloads.member(user, roles=roles)

    def permissions(self, user_id: int) -> int:
        if user_id == self.owner_id:
            return 0xFFFF_FFFF_FFFF
        role_ids = [self.guild_id, *map(int, self.members[user_id]["roles"])]
        value = 0
        for role_id in role_ids:
            value |= int(self.roles[role_id]["permissions"])
        return value

    def guild_payload(self) -> Payload:
        return payloads.guild(
            self.guild_id,
            name="Fake Guild",
            owner_id=self.owner_id,
            roles=list(self.roles.values()),
            channels=[c for c in self.channels.values() if c["type"] == 0],
            members=list(self.members.values()),
            threads=[c for c in self.channels.values() if c["type"] == 11],
        )

    def application_payload(self) -> Payload:
        owner = self.users[self.owner_id]
        return payloads.application(
            self.application_id, name="imagine-bot", owner=owner, bot=self.bot_user
        )

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{GATEWAY_PATH}"

    async def start(self) -> None:
        # Discord takes uploads up to the guild's limit (25 MB+ when boosted); aiohttp's own
        # default would refuse any request over 1 MB with a 413.
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get(GATEWAY_PATH, self._gateway)
        for method, path, name, handler, bot_auth in self._routes():
            app.router.add_route(method, path, self._endpoint(name, handler, bot_auth=bot_auth))
        app.router.add_route("*", "/{tail:.*}", self._endpoint("unknown", self._unknown))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        for session in list(self._sessions):
            await session.ws.close(code=1001, message=b"fake discord stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def check_clean(self) -> None:
        """Fail if a request hit a route the fake does not know, or tried to leave the machine."""
        if not self.strict:
            return
        problems = [f"unknown route {r.method} {r.path}" for r in self.unknown_requests]
        problems += [f"escaped request to {url}" for url in self.escaped_requests]
        if problems:
            raise AssertionError("fake discord: " + "; ".join(problems))

    def guard_request(self, method: str, url: str) -> None:
        """Called for every aiohttp request while the fixture runs: loopback only."""
        host = yarl.URL(url).host
        if host is None or host in ("127.0.0.1", "localhost", "::1"):
            return
        self.escaped_requests.append(f"{method} {url}")
        log.error("fake discord: blocked a request to %s %s", method, url)
        raise EscapedRequestError(f"blocked a non-loopback request: {method} {url}")

    # -- fault injection --------------------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: float = 0.01,
        when: Callable[[RecordedRequest], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` requests to ``route`` with ``status`` (429: a rate limit);
        with ``when``, only the requests it matches (e.g. the edit that carries a result)."""
        self._faults[route] = _Fault(status, times, retry_after, when)

    def flaky(
        self,
        status: int = 429,
        *,
        every: int = 2,
        retry_after: float = 0.05,
        routes: set[str] | None = None,
    ) -> None:
        """From now on fail every ``every``-th request (to ``routes``; by default to every route
        the bot writes to, i.e. all but GETs) with ``status``: Discord on a bad day."""
        frozen = frozenset(routes) if routes is not None else None
        self._flaky = _Flaky(status, every, retry_after, frozen)

    def steady(self) -> None:
        """Stop what ``flaky`` started."""
        self._flaky = None

    async def drop_gateway(self, code: int = 4000, *, resumable: bool = True) -> None:
        """Close every gateway connection as Discord does when it restarts a gateway node
        (4000); the bot reconnects and RESUMEs, and what was dispatched meanwhile is replayed to
        it. Not `resumable`: the session is forgotten, so the RESUME gets INVALID_SESSION and the
        bot must IDENTIFY afresh (a new READY)."""
        self.dropped = resumable
        if not resumable:
            self._session_state = None
        for session in [s for s in self._sessions if not s.ws.closed]:
            session.identified = False
            await session.ws.close(code=code, message=b"fake discord: connection dropped")

    def expire(self, interaction: FakeInteraction) -> None:
        """Make the interaction's token expire, as after 15 minutes."""
        interaction.expired = True

    def _check_fault(self, record: RecordedRequest) -> None:
        self._check_flaky(record)
        fault = self._faults.get(record.route)
        if fault is None or (fault.when is not None and not fault.when(record)):
            return
        fault.times -= 1
        if fault.times <= 0:
            del self._faults[record.route]
        record.injected = True
        raise _injected(fault.status, fault.retry_after)

    def _check_flaky(self, record: RecordedRequest) -> None:
        flaky = self._flaky
        if flaky is None:
            return
        if flaky.routes is None and record.method == "GET":
            return
        if flaky.routes is not None and record.route not in flaky.routes:
            return
        flaky.seen += 1
        if flaky.seen % flaky.every == 1 or flaky.every == 1:
            record.injected = True
            raise _injected(flaky.status, flaky.retry_after)

    # -- recording and waiting --------------------------------------------------------------------

    def mark(self) -> int:
        """An index into ``requests``; pass it as ``since=`` to wait only for newer requests."""
        return len(self.requests)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(
        self,
        probe: Callable[[], T | None],
        *,
        timeout: float,  # noqa: ASYNC109
        what: str,
    ) -> T:
        """Wait until ``probe()`` returns something other than None (re-checked on every change)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while (found := probe()) is None:
                    await self._changed.wait()
                return found
        except TimeoutError:
            recent = [f"{r.method} {r.route} -> {r.status}" for r in self.requests[-12:]]
            raise TimeoutError(f"no {what} within {timeout}s; recent requests: {recent}") from None

    async def wait_for(
        self,
        predicate: Callable[[RecordedRequest], bool],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        since: int = 0,
    ) -> RecordedRequest:
        """The first recorded request (from index ``since``) matching ``predicate``."""

        def probe() -> RecordedRequest | None:
            return next((r for r in self.requests[since:] if predicate(r)), None)

        return await self.wait_until(probe, timeout=timeout, what="matching request")

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The first live (not deleted) message matching ``predicate``, once there is one."""

        def probe() -> StoredMessage | None:
            return next((m for m in self.live_messages() if predicate(m)), None)

        return await self.wait_until(probe, timeout=timeout, what="matching message")

    async def wait_for_callback(
        self,
        interaction: FakeInteraction,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> RecordedRequest:
        """The bot's answer to ``interaction`` (``POST /interactions/{id}/{token}/callback``);
        a try that an injected failure refused does not count."""
        return await self.wait_for(
            lambda r: (
                r.route == "interaction_callback"
                and r.params["interaction_id"] == str(interaction.id)
                and not r.injected
            ),
            timeout=timeout,
        )

    def live_messages(self, channel_id: int | None = None) -> list[StoredMessage]:
        return [
            m
            for m in self.messages.values()
            if not m.deleted and (channel_id is None or m.channel_id == channel_id)
        ]

    def channel_messages(self, channel_id: int | None = None) -> list[StoredMessage]:
        """What everyone sees in the channel: live, non-ephemeral messages, oldest first."""
        channel_id = self.channel_id if channel_id is None else channel_id
        return [m for m in self.live_messages(channel_id) if not m.ephemeral]

    def original_message(self, interaction: FakeInteraction) -> StoredMessage | None:
        if interaction.original_message_id is None:
            return None
        return self.messages.get(interaction.original_message_id)

    # -- HTTP plumbing ----------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, str, str, Handler, bool]]:
        """(method, path, route name, handler, needs the bot token) for every known route."""
        api = API_PREFIX
        cmds = api + "/applications/{app_id}/commands"
        guild_cmds = api + "/applications/{app_id}/guilds/{guild_id}/commands"
        callback = api + "/interactions/{interaction_id}/{token}/callback"
        hook = api + "/webhooks/{app_id}/{token}"
        hook_msg = hook + "/messages/{message_id}"
        chan = api + "/channels/{channel_id}"
        msg = chan + "/messages/{message_id}"
        react = msg + "/reactions/{emoji}/@me"
        member = api + "/guilds/{guild_id}/members/{user_id}"
        cdn = "/attachments/{channel_id}/{attachment_id}/{filename}"
        return [
            ("GET", api + "/users/@me", "users_me", self._users_me, True),
            ("GET", api + "/oauth2/applications/@me", "application", self._app, True),
            ("GET", api + "/applications/@me", "application", self._app, True),
            ("GET", api + "/gateway", "gateway", self._gateway_info, False),
            ("GET", api + "/gateway/bot", "gateway_bot", self._gateway_info, True),
            ("GET", cmds, "commands_get", self._commands_get, True),
            ("PUT", cmds, "commands_put", self._commands_put, True),
            ("POST", cmds, "commands_post", self._commands_post, True),
            ("GET", guild_cmds, "commands_get", self._commands_get, True),
            ("PUT", guild_cmds, "commands_put", self._commands_put, True),
            ("POST", guild_cmds, "commands_post", self._commands_post, True),
            ("POST", callback, "interaction_callback", self._callback, False),
            ("POST", hook, "webhook_execute", self._webhook_execute, False),
            ("GET", hook_msg, "webhook_message_get", self._hook_get, False),
            ("PATCH", hook_msg, "webhook_message_edit", self._hook_edit, False),
            ("DELETE", hook_msg, "webhook_message_delete", self._hook_del, False),
            ("GET", chan, "channel_get", self._channel_get, True),
            ("GET", chan + "/messages", "channel_history", self._channel_history, True),
            ("POST", chan + "/messages", "channel_message_create", self._channel_post, True),
            ("GET", msg, "channel_message_get", self._channel_msg_get, True),
            ("PATCH", msg, "channel_message_edit", self._channel_msg_edit, True),
            ("DELETE", msg, "channel_message_delete", self._channel_msg_delete, True),
            ("POST", chan + "/typing", "typing", self._no_content, True),
            ("PUT", react, "reaction_add", self._reaction_add, True),
            ("DELETE", react, "reaction_remove", self._reaction_del, True),
            ("POST", api + "/users/@me/channels", "dm_create", self._dm_create, True),
            ("GET", member, "guild_member_get", self._member_get, True),
            ("GET", "/attachments/{attachment_id}/{filename}", "attachment", self._file, False),
            # Discord's CDN form of the same file (cdn.discordapp.com is sent here: fixtures)
            ("GET", cdn, "cdn_attachment", self._file, False),
            ("GET", "/ephemeral-" + cdn.lstrip("/"), "cdn_attachment", self._file, False),
        ]

    def _endpoint(
        self, route: str, handler: Handler, *, bot_auth: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            record = await _read_request(request, route)
            response = await self._answer(record, handler, bot_auth=bot_auth)
            record.status = response.status
            record.answered_at = asyncio.get_running_loop().time()
            self.requests.append(record)
            await self._notify()
            return response

        return endpoint

    async def _answer(
        self, record: RecordedRequest, handler: Handler, *, bot_auth: bool
    ) -> web.StreamResponse:
        try:
            self._check_fault(record)
            if bot_auth and record.headers.get("Authorization") != f"Bot {self.bot_token}":
                raise ApiError(401, 0, "401: Unauthorized")
            result = await handler(record)
        except ApiError as error:
            record.response = error.body
            return _json_response(error.body, error.status, error.headers)
        if isinstance(result, web.StreamResponse):
            return result
        record.response = result
        return web.Response(status=204) if result is None else _json_response(result)

    async def _unknown(self, record: RecordedRequest) -> None:
        log.warning(
            "fake discord: unknown route %s %s (add it to tests/fake_discord/server.py)",
            record.method,
            record.path,
        )
        self.unknown_requests.append(record)
        raise ApiError(404, 0, "404: Not Found")

    async def _no_content(self, record: RecordedRequest) -> None:
        self._channel(record)

    # -- login, gateway info, application commands ------------------------------------------------

    async def _users_me(self, record: RecordedRequest) -> Payload:
        return self.bot_user

    async def _app(self, record: RecordedRequest) -> Payload:
        return self.application_payload()

    async def _gateway_info(self, record: RecordedRequest) -> Payload:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    def _command_scope(self, record: RecordedRequest) -> int | None:
        if record.params["app_id"] != str(self.application_id):
            raise ApiError(403, 50001, "Missing Access")
        raw_guild = record.params.get("guild_id")
        if raw_guild is None:
            return None
        if int(raw_guild) != self.guild_id:
            raise ApiError(403, 50001, "Missing Access")
        return self.guild_id

    def _command(self, spec: Payload, guild_id: int | None) -> Payload:
        same = [
            c
            for c in self.commands.get(guild_id, [])
            if c["name"] == spec["name"] and c.get("type", 1) == spec.get("type", 1)
        ]
        command_id = int(same[0]["id"]) if same else self._ids.next()
        return payloads.app_command(
            spec, command_id=command_id, app_id=self.application_id, guild_id=guild_id
        )

    async def _commands_get(self, record: RecordedRequest) -> list[Payload]:
        return self.commands.get(self._command_scope(record), [])

    async def _commands_put(self, record: RecordedRequest) -> list[Payload]:
        guild_id = self._command_scope(record)
        self.commands[guild_id] = [self._command(spec, guild_id) for spec in record.json or []]
        return self.commands[guild_id]

    async def _commands_post(self, record: RecordedRequest) -> Payload:
        guild_id = self._command_scope(record)
        command = self._command(record.payload, guild_id)
        others = [c for c in self.commands.get(guild_id, []) if c["id"] != command["id"]]
        self.commands[guild_id] = [*others, command]
        return command

    def find_command(self, name: str) -> tuple[Payload, int | None]:
        """The synced chat-input command called ``name`` and its guild id (None: global)."""
        for scope in (self.guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, scope
        synced = sorted(c["name"] for cs in self.commands.values() for c in cs)
        raise LookupError(f"/{name} was never synced to the fake; synced commands: {synced}")

    # -- messages ---------------------------------------------------------------------------------

    def _channel(self, record: RecordedRequest) -> Payload:
        channel = self.channels.get(int(record.params["channel_id"]))
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def _attachments(
        self, message: StoredMessage, fields: Payload, parts: list[Part]
    ) -> list[StoredAttachment] | None:
        """The message's new attachment list, or None when the request leaves it unchanged."""
        uploads = {index: p for p in parts if (index := _upload_index(p)) is not None}
        if "attachments" not in fields and not uploads:
            return None
        kept = {a.id: a for a in message.attachments}
        result: list[StoredAttachment] = []
        for entry in fields.get("attachments") or []:
            key = str(entry.get("id"))
            if key in uploads:
                part = uploads.pop(key)
                result.append(
                    self._store_file(part, entry.get("filename"), entry.get("description"))
                )
            elif key.isdigit() and int(key) in kept:
                result.append(kept[int(key)])
        result += [self._store_file(part, None, None) for part in uploads.values()]
        return result

    def _store_file(
        self, part: Part, filename: str | None, description: str | None
    ) -> StoredAttachment:
        name = filename or part.filename or "file"
        return self.store_attachment(UploadedFile(name, part.data), description=description)

    def store_attachment(
        self, upload: UploadedFile, *, description: str | None = None
    ) -> StoredAttachment:
        """Keep a file's bytes and give it a URL served by the fake."""
        if len(upload.data) > self.attachment_size_limit:
            raise ApiError(413, 40005, "Request entity too large")
        attachment_id = self._ids.next()
        content_type = upload.content_type or mimetypes.guess_type(upload.filename)[0]
        attachment = StoredAttachment(
            id=attachment_id,
            filename=upload.filename,
            content_type=content_type,
            data=upload.data,
            url=f"{self.base_url}/attachments/{attachment_id}/{upload.filename}",
            description=description,
        )
        self.attachments[attachment_id] = attachment
        return attachment

    def _new_message(
        self, channel_id: int, *, flags: int, interaction: FakeInteraction | None
    ) -> StoredMessage:
        channel = self.channels[channel_id]
        message = StoredMessage(
            id=self._ids.next(),
            channel_id=channel_id,
            guild_id=int(channel["guild_id"]) if "guild_id" in channel else None,
            author=self.bot_user,
            created_at=payloads.timestamp(),
            flags=flags,
        )
        if interaction is not None:
            message.webhook_id = self.application_id
            message.interaction_id = interaction.id
            message.type = 20 if interaction.type == payloads.APPLICATION_COMMAND else 0
            message.interaction_metadata = payloads.interaction_metadata(
                interaction_id=interaction.id,
                interaction_type=interaction.type,
                user_payload=self.users[interaction.user_id],
                guild_id=message.guild_id,
            )
        return message

    def create_message(
        self,
        channel_id: int,
        fields: Payload,
        parts: list[Part] | None = None,
        *,
        interaction: FakeInteraction | None = None,
    ) -> StoredMessage:
        """Store a message the bot sent (also usable by tests to seed a channel)."""
        _validate_fields(fields)
        flags = int(fields.get("flags") or 0)
        if interaction is None:
            flags &= ~FLAG_EPHEMERAL  # only interaction responses can be ephemeral
        message = self._new_message(channel_id, flags=flags, interaction=interaction)
        self._apply_fields(message, fields, parts or [])
        self.messages[message.id] = message
        return message

    def edit_message(
        self, message: StoredMessage, fields: Payload, parts: list[Part] | None = None
    ) -> StoredMessage:
        _validate_fields(fields)
        self._apply_fields(message, fields, parts or [])
        if fields.get("flags") is not None:  # ephemeral cannot change; loading ends below
            fixed = message.flags & FLAG_EPHEMERAL
            message.flags = fixed | (int(fields["flags"]) & ~(FLAG_EPHEMERAL | FLAG_LOADING))
        if not message.loading:
            message.edited_at = payloads.timestamp()
        message.flags &= ~FLAG_LOADING
        return message

    def _apply_fields(self, message: StoredMessage, fields: Payload, parts: list[Part]) -> None:
        attachments = self._attachments(message, fields, parts)
        if "content" in fields:
            message.content = fields["content"] or ""
        if "components" in fields:
            message.components = list(fields["components"] or [])
        if attachments is not None:
            message.attachments = attachments
        if "embeds" in fields:
            message.embeds = [
                _resolve_embed(e, message.attachments) for e in fields["embeds"] or []
            ]

    def _live(self, message_id: int) -> StoredMessage:
        message = self.messages.get(message_id)
        if message is None or message.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    # -- interaction callbacks and webhooks -------------------------------------------------------

    async def _callback(self, record: RecordedRequest) -> Payload | None:
        interaction = self.interactions.get(int(record.params["interaction_id"]))
        if (
            interaction is None
            or interaction.token != record.params["token"]
            or interaction.expired
            or asyncio.get_running_loop().time() - interaction.dispatched_at > self.ack_deadline_s
        ):
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.response_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        response_type = int(record.payload.get("type", 0))
        message = self._apply_callback(interaction, response_type, record)
        interaction.response_type = response_type
        interaction.acked_at = asyncio.get_running_loop().time()
        flags = int((record.payload.get("data") or {}).get("flags") or 0)
        interaction.ephemeral = bool(flags & FLAG_EPHEMERAL)
        if record.query.get("with_response", "").lower() not in ("1", "true"):
            return None  # Discord answers 204 unless asked for the callback object
        return self._callback_payload(interaction, response_type, message)

    def _apply_callback(
        self, interaction: FakeInteraction, response_type: int, record: RecordedRequest
    ) -> StoredMessage | None:
        data: Payload = record.payload.get("data") or {}
        on_message = interaction.message_id is not None
        if response_type == 4:
            message = self.create_message(
                interaction.channel_id, data, record.parts, interaction=interaction
            )
        elif response_type == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = self.create_message(
                interaction.channel_id, {"flags": flags}, interaction=interaction
            )
        elif response_type in (6, 7) and on_message:
            assert interaction.message_id is not None
            message = self._live(interaction.message_id)
            if response_type == 7:
                self.edit_message(message, data, record.parts)
        elif response_type == 8 and interaction.type == payloads.AUTOCOMPLETE:
            interaction.choices = list(data.get("choices") or [])
            return None
        elif response_type == 9 and interaction.type != MODAL_SUBMIT:
            interaction.modal = data
            return None
        else:
            raise ApiError(400, 50035, f"Invalid interaction response type {response_type}")
        interaction.original_message_id = message.id
        return message

    def _callback_payload(
        self, interaction: FakeInteraction, response_type: int, message: StoredMessage | None
    ) -> Payload:
        summary: Payload = {"id": str(interaction.id), "type": interaction.type}
        resource: Payload = {"type": response_type}
        if message is not None:
            summary["response_message_id"] = str(message.id)
            summary["response_message_loading"] = message.loading
            summary["response_message_ephemeral"] = message.ephemeral
            if response_type != 6:
                resource["message"] = message.payload()
        return {"interaction": summary, "resource": resource}

    def _hook_interaction(self, record: RecordedRequest) -> FakeInteraction:
        interaction = self._by_token.get(record.params["token"])
        if record.params["app_id"] != str(self.application_id) or interaction is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        if interaction.expired:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if interaction.response_type is None:  # followups need an acknowledged interaction
            raise ApiError(404, 10015, "Unknown Webhook")
        return interaction

    def _hook_message(self, record: RecordedRequest) -> StoredMessage:
        interaction = self._hook_interaction(record)
        raw_id = record.params["message_id"]
        if raw_id == "@original":
            if interaction.original_message_id is None:
                raise ApiError(404, 10008, "Unknown Message")
            return self._live(interaction.original_message_id)
        message = self._live(int(raw_id))
        if message.webhook_id != self.application_id:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def _webhook_execute(self, record: RecordedRequest) -> Payload | None:
        interaction = self._hook_interaction(record)
        original = self.original_message(interaction)
        placeholder = original if original is not None and not original.deleted else None
        if interaction.response_type == 5 and placeholder is not None and placeholder.loading:
            # After a deferred (type 5) answer the first followup fills in the placeholder.
            message = self.edit_message(placeholder, record.payload, record.parts)
        else:
            message = self.create_message(
                interaction.channel_id, record.payload, record.parts, interaction=interaction
            )
        wait = record.query.get("wait", "").lower() in ("1", "true")
        return message.payload() if wait else None

    async def _hook_get(self, record: RecordedRequest) -> Payload:
        return self._hook_message(record).payload()

    async def _hook_edit(self, record: RecordedRequest) -> Payload:
        message = self._hook_message(record)
        return self.edit_message(message, record.payload, record.parts).payload()

    async def _hook_del(self, record: RecordedRequest) -> None:
        self._hook_message(record).deleted = True

    # -- channels, messages by the bot token, DMs, members, files ---------------------------------

    def _channel_message(self, record: RecordedRequest) -> StoredMessage:
        channel = self._channel(record)
        message = self._live(int(record.params["message_id"]))
        if str(message.channel_id) != channel["id"] or message.ephemeral:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def _channel_get(self, record: RecordedRequest) -> Payload:
        return self._channel(record)

    async def _channel_history(self, record: RecordedRequest) -> list[Payload]:
        self._channel(record)
        limit = int(record.query.get("limit", "50"))
        newest_first = reversed(self.channel_messages(int(record.params["channel_id"])))
        return [m.payload() for m in newest_first][:limit]

    async def _channel_post(self, record: RecordedRequest) -> Payload:
        channel_id = int(self._channel(record)["id"])
        return self.create_message(channel_id, record.payload, record.parts).payload()

    async def _channel_msg_get(self, record: RecordedRequest) -> Payload:
        return self._channel_message(record).payload()

    async def _channel_msg_edit(self, record: RecordedRequest) -> Payload:
        message = self._channel_message(record)
        if message.author["id"] != self.bot_user["id"]:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return self.edit_message(message, record.payload, record.parts).payload()

    async def _channel_msg_delete(self, record: RecordedRequest) -> None:
        self._channel_message(record).deleted = True

    async def _reaction_add(self, record: RecordedRequest) -> None:
        self._channel_message(record).reactions.append(record.params["emoji"])

    async def _reaction_del(self, record: RecordedRequest) -> None:
        message = self._channel_message(record)
        message.reactions = [e for e in message.reactions if e != record.params["emoji"]]

    async def _dm_create(self, record: RecordedRequest) -> Payload:
        user = self.users.get(int(record.payload.get("recipient_id", 0)))
        if user is None:
            raise ApiError(400, 50035, "Invalid Form Body")
        existing = [
            c
            for c in self.channels.values()
            if c["type"] == 1 and c["recipients"][0]["id"] == user["id"]
        ]
        if existing:
            return existing[0]
        channel = payloads.dm_channel(self._ids.next(), user)
        self.channels[int(channel["id"])] = channel
        return channel

    async def _member_get(self, record: RecordedRequest) -> Payload:
        member = self.members.get(int(record.params["user_id"]))
        if int(record.params["guild_id"]) != self.guild_id or member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return member

    async def _file(self, record: RecordedRequest) -> web.Response:
        attachment = self.attachments.get(int(record.params["attachment_id"]))
        if attachment is None:
            raise ApiError(404, 0, "404: Not Found")
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, headers={"Content-Type": content_type})

    # -- gateway ----------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = _GatewaySession(ws)
        self._sessions.append(session)
        try:
            await session.send({"op": OP_HELLO, "d": {"heartbeat_interval": 41250}})
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    await self._on_frame(session, json.loads(frame.data))
        finally:
            self._sessions.remove(session)
        return ws

    async def _on_frame(self, session: _GatewaySession, frame: Payload) -> None:
        self.gateway_frames.append(frame)
        op = frame.get("op")
        if op == OP_HEARTBEAT:
            await session.send({"op": OP_HEARTBEAT_ACK})
        elif op == OP_IDENTIFY:
            await self._identify(session)
        elif op == OP_RESUME:
            await self._resume(session, frame["d"])
        elif op == OP_REQUEST_MEMBERS:
            await self._send_members(session, frame["d"])
        await self._notify()

    async def _identify(self, session: _GatewaySession) -> None:
        session.state = self._session_state = _SessionState(secrets.token_hex(16))
        self.dropped = False
        ready = payloads.ready(
            user_payload=self.bot_user,
            app_id=self.application_id,
            guild_ids=[self.guild_id],
            session_id=session.state.session_id,
            resume_url=self.gateway_url,
        )
        await session.dispatch("READY", ready)
        await session.dispatch("GUILD_CREATE", self.guild_payload())
        session.identified = True

    async def _resume(self, session: _GatewaySession, request: Payload) -> None:
        state = self._session_state
        if (
            state is None
            or request.get("session_id") != state.session_id
            or request.get("token") != self.bot_token
        ):
            await session.send({"op": OP_INVALID_SESSION, "d": False})
            return
        session.state = state
        for seq, event, data in state.pending:
            await session.send({"op": OP_DISPATCH, "t": event, "s": seq, "d": data})
        state.pending.clear()
        await session.dispatch("RESUMED", {})
        session.identified = True
        self.resumes += 1
        self.dropped = False

    async def _send_members(self, session: _GatewaySession, request: Payload) -> None:
        wanted = {int(u) for u in request.get("user_ids") or []}
        members = [m for uid, m in self.members.items() if not wanted or uid in wanted]
        chunk: Payload = {
            "guild_id": str(self.guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if "nonce" in request:
            chunk["nonce"] = request["nonce"]
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    @property
    def connected(self) -> int:
        """How many bots are connected and identified."""
        return sum(1 for s in self._sessions if s.identified and not s.ws.closed)

    async def push_event(self, event: str, data: Payload) -> None:
        """Send a gateway DISPATCH to every connected bot."""
        sessions = [s for s in self._sessions if s.identified and not s.ws.closed]
        if not sessions and self._session_state is not None and self.dropped:
            state = self._session_state  # the bot is reconnecting: it gets this on RESUME
            state.seq += 1
            state.pending.append((state.seq, event, data))
            return
        if not sessions:
            raise RuntimeError("no bot is connected to the fake gateway (start one first)")
        for session in sessions:
            await session.dispatch(event, data)

    # -- pushing interactions ---------------------------------------------------------------------

    async def push_interaction(
        self,
        interaction_type: int,
        data: Payload,
        *,
        user_id: int | None = None,
        channel_id: int | None = None,
        message: StoredMessage | None = None,
        **overrides: Any,
    ) -> FakeInteraction:
        """Send an INTERACTION_CREATE; ``overrides`` replace top-level payload keys."""
        user_id = self.user_id if user_id is None else user_id
        channel_id = self.channel_id if channel_id is None else channel_id
        interaction_id = self._ids.next()
        token = payloads.interaction_token(interaction_id)
        payload = payloads.interaction(
            interaction_id=interaction_id,
            interaction_type=interaction_type,
            data=data,
            app_id=self.application_id,
            token=token,
            guild_id=self.guild_id,
            channel=self.channels[channel_id],
            member_payload=self.members[user_id],
            member_permissions=self.permissions(user_id),
            app_permissions=self.permissions(self.application_id),
            attachment_size_limit=self.attachment_size_limit,
            locale=self.locale,
            message=message.payload() if message is not None else None,
        )
        payload.update(overrides)
        interaction = FakeInteraction(
            id=interaction_id,
            token=token,
            type=interaction_type,
            payload=payload,
            channel_id=channel_id,
            user_id=user_id,
            message_id=message.id if message is not None else None,
        )
        self.interactions[interaction_id] = interaction
        self._by_token[token] = interaction
        interaction.dispatched_at = asyncio.get_running_loop().time()
        await self.push_event("INTERACTION_CREATE", payload)
        return interaction

    async def push_slash_command(
        self, name: str, options: dict[str, Any] | None = None, **kwargs: Any
    ) -> FakeInteraction:
        """Invoke ``/name`` (``"group sub"`` for subcommands) as a user would.

        ``options`` maps option names to values; an attachment option takes an
        :class:`UploadedFile`. ``kwargs`` go to :meth:`push_interaction`.
        """
        root, *subs = name.split()
        command, guild_id = self.find_command(root)
        data: Payload = {"id": command["id"], "name": root, "type": 1}
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        container, specs = data, command.get("options") or []
        for sub in subs:
            spec = self._option_spec(specs, sub, name)
            node: Payload = {"name": sub, "type": spec["type"], "options": []}
            container["options"] = [node]
            container, specs = node, spec.get("options") or []
        resolved: Payload = {}
        values = [self._option(specs, k, v, resolved, name) for k, v in (options or {}).items()]
        if values or subs:
            container["options"] = values
        if resolved:
            data["resolved"] = resolved
        return await self.push_interaction(payloads.APPLICATION_COMMAND, data, **kwargs)

    @staticmethod
    def _option_spec(specs: list[Payload], option: str, command: str) -> Payload:
        spec = next((s for s in specs if s["name"] == option), None)
        if spec is None:
            known = [s["name"] for s in specs]
            raise LookupError(f"/{command} has no option {option!r}; it has {known}")
        return spec

    def _option(
        self, specs: list[Payload], option: str, value: Any, resolved: Payload, command: str
    ) -> Payload:
        option_type = self._option_spec(specs, option, command)["type"]
        if option_type == payloads.OPTION_ATTACHMENT:
            if not isinstance(value, UploadedFile):
                raise TypeError(f"option {option!r} is an attachment: pass an UploadedFile")
            attachment = self.store_attachment(value)
            # As Discord links a command's attachments: on its CDN (which the fixtures send
            # here), signed, expiring within hours.
            attachment.url = (
                f"https://cdn.discordapp.com/ephemeral-attachments/{self.channel_id}/"
                f"{attachment.id}/{attachment.filename}?ex=6751d2f0&is=67508170&hm=3f9a"
            )
            resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.payload(
                ephemeral=True
            )
            value = str(attachment.id)
        elif option_type in (6, 7, 8, 9):
            raise NotImplementedError("user, channel, role and mentionable options")
        return {"name": option, "type": option_type, "value": value}

    async def push_component(
        self,
        message: StoredMessage | int,
        custom_id: str,
        *,
        values: list[str] | None = None,
        **kwargs: Any,
    ) -> FakeInteraction:
        """Click a button (or pick ``values`` in a select menu) on a message the bot sent."""
        stored = self._live(message if isinstance(message, int) else message.id)
        component = stored.component(custom_id)
        if component is None:
            raise LookupError(
                f"message {stored.id} has no {custom_id!r}; it has {stored.custom_ids}"
            )
        if component.get("disabled"):
            raise ValueError(f"{custom_id!r} is disabled: Discord would not send the click")
        data: Payload = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        return await self.push_interaction(MESSAGE_COMPONENT, data, message=stored, **kwargs)

    async def push_reaction(
        self, message: StoredMessage | int, emoji: str, *, user_id: int | None = None
    ) -> None:
        """A user adds the (Unicode) ``emoji`` reaction to a message: Discord shows it and sends
        MESSAGE_REACTION_ADD to bots with the reactions intent (not an interaction: nothing to
        answer)."""
        user_id = self.user_id if user_id is None else user_id
        stored = self._live(message if isinstance(message, int) else message.id)
        stored.reactions.append(emoji)
        data: Payload = {
            "user_id": str(user_id),
            "channel_id": str(stored.channel_id),
            "message_id": str(stored.id),
            "message_author_id": stored.author["id"],
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if stored.guild_id is not None:
            data["guild_id"] = str(stored.guild_id)
            data["member"] = self.members[user_id]
        await self.push_event("MESSAGE_REACTION_ADD", data)

    async def push_modal_submit(
        self, source: FakeInteraction, values: dict[str, str | list[str]], **kwargs: Any
    ) -> FakeInteraction:
        """Submit the modal the bot opened in answer to ``source``, filled with ``values``."""
        if source.modal is None:
            raise LookupError(f"the bot did not answer interaction {source.id} with a modal")
        unused = set(values)
        components = [_submitted(c, values, unused) for c in source.modal["components"]]
        if unused:
            raise LookupError(f"the modal has no fields {sorted(unused)}")
        data = {"custom_id": source.modal["custom_id"], "components": components}
        message = self.messages.get(source.message_id) if source.message_id else None
        kwargs.setdefault("user_id", source.user_id)
        kwargs.setdefault("channel_id", source.channel_id)
        return await self.push_interaction(MODAL_SUBMIT, data, message=message, **kwargs)


def _submitted(component: Payload, values: dict[str, str | list[str]], unused: set[str]) -> Payload:
    """What Discord sends back for one modal component once the user filled it in."""
    kind = component["type"]
    answer: Payload = {"type": kind}
    if "id" in component:
        answer["id"] = component["id"]
    if kind == 1:
        answer["components"] = [_submitted(c, values, unused) for c in component["components"]]
    elif kind == 18:
        answer["component"] = _submitted(component["component"], values, unused)
    elif "custom_id" in component:
        custom_id = component["custom_id"]
        unused.discard(custom_id)
        answer["custom_id"] = custom_id
        if kind == 4:
            answer["value"] = values.get(custom_id, component.get("value") or "")
            if component.get("required", True) and not answer["value"]:
                raise ValueError(f"required field {custom_id!r} is empty: Discord blocks submit")
        else:
            answer["values"] = values.get(custom_id, [])
    return answer
