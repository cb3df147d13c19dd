"""The browser editor of Vary (Region): a page where the user marks the area of an image to redraw.

    editor = RegionEditor(config.web, store, secret=..., image_for=..., prompt_for=..., submit=...)
    await editor.start();  url = editor.link(RegionClaim(...));  ...;  await editor.close()

The HTTP contract (every route takes the token of `link`; see docs/_readme_web.md):
    GET  /edit/<token>          the editor page (HTML)
    GET  /edit/<token>/image    the source image
    POST /edit/<token>          multipart `mask` (a PNG of the image's size, white = redraw) and
                                `prompt` → 202 {"job_id", "message"}; else {"error"} with 400
                                (bad input), 403 (forged or used link), 410 (expired link, or the
                                image is gone), 413 (too large) or 500 (logged)
The rest of the bot is reached only through the three callbacks.
"""

from __future__ import annotations

import asyncio
import html
import io
import logging
import string
import time
import warnings
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Protocol

from aiohttp import web
from PIL import Image

from bot.config import WebConfig
from bot.region_tokens import (
    ExpiredToken,
    RegionClaim,
    RegionTokens,
    TokenError,
    UsedToken,
)
from engine.prompt import MAX_PROMPT_CHARS

__all__ = [
    "MAX_BODY_BYTES",
    "ImageFor",
    "PromptFor",
    "RegionEditor",
    "RegionRefused",
    "Submit",
    "TokenStore",
    "mask_problem",
]

log = logging.getLogger(__name__)

# A mask the page makes is black and white and compresses well (a 2048² one: ~30 KB); the limit
# leaves room for any image the bot makes, sent by a client that does not compress.
MAX_MASK_BYTES = 16 * 1024 * 1024
MAX_BODY_BYTES = MAX_MASK_BYTES + 2 * 1024 * 1024  # the prompt and the multipart framing
SHUTDOWN_TIMEOUT_S = 5.0  # a request still running on close (the bot is stopping) gets this long
USED = "This link was already used. Press 🖌️ Vary (Region) again for a new one."
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TOKEN_ROUTE = "/edit/{token:[A-Za-z0-9_.-]+}"
_ASSETS = ("editor.js", "editor.css")
_HEADERS = {
    # The token is in the address: no Referer carries it away, no cache keeps the page.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


class RegionRefused(Exception):
    """Raised by `submit` when it will not queue the job; the message is shown to the user."""


ImageFor = Callable[[RegionClaim], Path | None]  # the source image file; None: it is gone
PromptFor = Callable[[RegionClaim], str]  # the prompt the page starts with
Submit = Callable[[RegionClaim, bytes, str], Awaitable[str]]  # (claim, mask PNG, prompt) → job id


class TokenStore(Protocol):
    """What the editor needs of bot.store.Store."""

    def use_token(self, nonce: str) -> bool: ...
    def token_used(self, nonce: str) -> bool: ...
    def forget_tokens(self, used_before: float) -> int: ...


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RegionEditor:
    def __init__(
        self,
        config: WebConfig,
        store: TokenStore,
        *,
        secret: str,
        image_for: ImageFor,
        prompt_for: PromptFor,
        submit: Submit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._tokens = RegionTokens(secret, clock=clock)
        self._clock = clock
        self._image_for = image_for
        self._prompt_for = prompt_for
        self._submit = submit
        self._submitting: set[str] = set()  # nonces whose job is being submitted right now
        assets = resources.files("bot") / "web_assets"
        self._page = string.Template((assets / "editor.html").read_text())
        self._error_page = string.Template((assets / "error.html").read_text())
        self._assets = {name: (assets / name).read_bytes() for name in _ASSETS}
        self.app = self._make_app()
        self._runner: web.AppRunner | None = None

    def link(self, claim: RegionClaim) -> str:
        """The editor's address for this claim: valid for an hour, for one job."""
        return f"{self._config.public_url}/edit/{self._tokens.issue(claim)}"

    @property
    def address(self) -> str:
        """Where the started server listens, e.g. http://127.0.0.1:8080 (its port, when 0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the editor's server is not started")
        host, port = self._runner.addresses[0][:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def start(self) -> None:
        # Used links older than any valid one need no record.
        self._store.forget_tokens(used_before=self._clock() - 2 * self._tokens.ttl_s)
        # No access log: it would write every link (a token) into the bot's log.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._config.host, self._config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("the Vary (Region) editor listens on %s", self.address)

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # --- the routes

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._errors])
        app.router.add_get(_TOKEN_ROUTE, self._get_page)
        app.router.add_post(_TOKEN_ROUTE, self._post)
        app.router.add_get(_TOKEN_ROUTE + "/image", self._get_image)
        app.router.add_get("/static/{name}", self._get_asset)
        return app

    async def _get_page(self, request: web.Request) -> web.Response:
        claim = self._claim(request)
        self._image(claim)  # the page of a gone image would show nothing to edit
        page = self._page.substitute(
            token=html.escape(request.match_info["token"]),
            prompt=html.escape(self._prompt_for(claim)),
            max_prompt=MAX_PROMPT_CHARS,
        )
        return web.Response(text=page, content_type="text/html")

    async def _get_image(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self._image(self._claim(request)))

    async def _get_asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._assets:
            raise web.HTTPNotFound()
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return web.Response(body=self._assets[name], content_type=kind, charset="utf-8")

    async def _post(self, request: web.Request) -> web.Response:
        # 1. the link, then the image it is about
        claim = self._claim(request)
        image = self._image(claim)
        # 2. the form, all checked before anything is submitted
        form = await request.post()
        prompt = _prompt(form.get("prompt"))
        mask = _mask_bytes(form.get("mask"))
        problem = await asyncio.to_thread(_check_mask, mask, image)
        if problem is not None:
            raise _Refusal(400, problem)
        # 3. submit, once: no await between the check and taking the nonce
        if self._store.token_used(claim.nonce) or claim.nonce in self._submitting:
            raise _Refusal(403, USED)
        self._submitting.add(claim.nonce)
        try:
            try:
                job_id = await self._submit(claim, mask, prompt)
            except RegionRefused as refused:
                raise _Refusal(400, str(refused)) from None
            # 4. the link is spent only now that there is a job
            if not self._store.use_token(claim.nonce):
                log.warning("region link %s was used twice (job %s)", claim.nonce, job_id)
        finally:
            self._submitting.discard(claim.nonce)
        log.info("region edit of %s #%d: job %s", claim.job_id, claim.index, job_id)
        message = f"Queued — job {job_id}. The grid will appear in the Discord channel."
        return web.json_response({"job_id": job_id, "message": message}, status=202)

    # --- checks

    def _claim(self, request: web.Request) -> RegionClaim:
        try:
            claim = self._tokens.read(request.match_info["token"])
            if self._store.token_used(claim.nonce):
                raise UsedToken(USED)
        except TokenError as error:
            raise _Refusal(410 if isinstance(error, ExpiredToken) else 403, str(error)) from None
        return claim

    def _image(self, claim: RegionClaim) -> Path:
        path = self._image_for(claim)
        if path is None or not path.is_file():
            raise _Refusal(410, "The image is gone: it is no longer in the bot's storage.")
        return path

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refusals and HTTP errors as JSON (HTML for a GET); never a traceback."""
        try:
            response = await handler(request)
        except _Refusal as refusal:
            response = self._error(request, refusal.status, str(refusal))
        except web.HTTPRequestEntityTooLarge:
            response = self._error(request, 413, f"The upload is over {MAX_BODY_BYTES >> 20} MB.")
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = self._error(request, error.status, error.reason)
            if "Allow" in error.headers:
                response.headers["Allow"] = error.headers["Allow"]
        except Exception:
            log.exception("the editor failed on %s %s", request.method, request.path)
            response = self._error(request, 500, "something went wrong; it was logged")
        response.headers.update(_HEADERS)
        return response

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        if request.method in ("GET", "HEAD"):
            page = self._error_page.substitute(
                message=html.escape(message), stylesheet=_stylesheet(request.path)
            )
            return web.Response(status=status, text=page, content_type="text/html")
        return web.json_response({"error": message}, status=status)


def _stylesheet(path: str) -> str:
    """The stylesheet's address from the page at `path`, relative so that it also works behind a
    proxy that serves the bot under a path of its own (one `../` too many stops at the root)."""
    return "../" * path.count("/", 1) + "static/editor.css"


def _prompt(value: object) -> str:
    if value is None:
        raise _Refusal(400, "No prompt: send the prompt field.")
    if not isinstance(value, str):
        raise _Refusal(400, "The prompt must be text.")
    prompt = value.strip()
    if not prompt:
        raise _Refusal(400, "The prompt is empty.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _Refusal(400, f"The prompt is over {MAX_PROMPT_CHARS} characters.")
    return prompt


def _mask_bytes(value: object) -> bytes:
    if value is None:
        raise _Refusal(400, "No mask: send the marked area as the mask field (a PNG file).")
    if not isinstance(value, web.FileField):
        raise _Refusal(400, "The mask must be sent as a file (a PNG).")
    return value.file.read()


def _check_mask(mask: bytes, image: Path) -> str | None:
    with Image.open(image) as source:  # reads the header only
        size = source.size
    return mask_problem(mask, size)


def mask_problem(mask: bytes, size: tuple[int, int]) -> str | None:
    """Why `mask` is not a mask for an image of `size` (a PNG of that size, not all black);
    None when it is one."""
    if not mask.startswith(PNG_SIGNATURE):
        return "The mask is not a PNG."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(mask), formats=["PNG"]) as image:
                if image.size != size:
                    (w, h), (iw, ih) = image.size, size
                    return f"The mask is {w}×{h}; it must be the image's size, {iw}×{ih}."
                brightest = image.convert("L").getextrema()[1]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return "The mask is not a readable PNG."
    if not isinstance(brightest, int | float) or brightest == 0:
        return "The mask is empty: mark the area to redraw."
    return None
