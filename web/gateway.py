"""The web gateway: one page, and one websocket per browser session bridged to a Triton stream.

aiohttp serves the page and the websocket on one port. Each session gets one bidirectional
ModelStreamInfer stream (see session.py) on the gateway's one gRPC connection, whose round_robin
policy hands each new stream to the next live server of --url (several addresses, or a dns:///
name), so sessions spread evenly over replicas and each stays on its own. The gateway has no
route to Triton's HTTP API at all: the admin, repository and shared-memory APIs cannot be
reached through it.

Safety: the websocket upgrade checks the Origin (a page of this gateway, or one --allow-origin
names), the token (required once --host leaves loopback), and the number of live sessions (past
it the page is told "server busy" and the socket closes with 1013, try again later). Messages
over --max-message-bytes close the socket (1009); frames over the per-session rate cap are
refused one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import grpc
from aiohttp import WSCloseCode, WSMsgType, web

from swaptron.client.connection import Connection
from swaptron.client.errors import CONNECTION_ERRORS, StreamError, first_line
from swaptron.client.identities import served_identities
from swaptron.client.scan import detector_facts
from swaptron.client.stream import answer_outputs
from swaptron.client.transport import StreamOptions
from swaptron.specs import FACE_CHOICES, STREAM, STREAM_CHECKED
from swaptron.verdicts import Cuts
from swaptron.web.session import PageMessageError, PageSession, Send, SessionLimits

LOG = logging.getLogger("swaptron.web")
STATIC = ("index.html", "app.js", "encoder.js")  # the page, then its scripts
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript"}
TRY_AGAIN_LATER = 1013


class GatewayError(RuntimeError):
    """The gateway cannot start as asked; the message names the fix."""


@dataclass(frozen=True)
class GatewayOptions:
    """Where the gateway listens, which Triton it talks to, and what sessions may do."""

    url: str = "127.0.0.1:8001"
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    allow_origins: tuple[str, ...] = ()
    max_sessions: int = 2
    max_message_bytes: int = 2 * 1024 * 1024
    model: str | None = None  # None: the checked stream when served, else the plain stream
    connect_timeout_s: float = 60.0
    limits: SessionLimits = field(default_factory=SessionLimits)


def is_loopback(host: str) -> bool:
    """True for a loopback address or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: GatewayOptions) -> None:
    """GatewayError when the gateway would be reachable from other hosts without a token."""
    if not is_loopback(options.host) and not options.token:
        raise GatewayError(f"--host {options.host} reaches beyond this machine: pass --token "
                           "(or SWAPTRON_WEB_TOKEN) so that only people with it can stream")
    if options.token is not None and len(options.token) < 16:
        raise GatewayError("the token is too short: use at least 16 characters "
                           "(python3 -c 'import secrets; print(secrets.token_hex(16))')")


class Gateway:
    """The aiohttp application and its live sessions."""

    def __init__(self, options: GatewayOptions) -> None:
        check_options(options)
        self.options = options
        self.sessions = 0
        self.model = options.model or STREAM
        self.identities: list[str] = []
        self.cuts: Cuts | None = None  # the served detector's, on a checked stream
        self.default_identity: str | None = None
        self.app = web.Application(client_max_size=64 * 1024)
        self.app.router.add_get("/", self.page)
        for script in STATIC[1:]:
            self.app.router.add_get(f"/{script}", self.page)
        self.app.router.add_get("/ws", self.websocket)
        self.app.on_startup.append(self.discover)
        self.app.on_cleanup.append(self.close_connection)
        self.connection: Connection | None = None

    @property
    def checked(self) -> bool:
        """True when the stream carries the forgery detector's fake score."""
        return self.model == STREAM_CHECKED

    async def discover(self, _app: web.Application) -> None:
        """Which stream ensemble to use, and the identities the server swaps into."""
        self.connection = connection = Connection.open(self.options.url)
        await connection.wait_ready(STREAM, self.options.connect_timeout_s)
        if self.options.model is None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                if await connection.readiness(STREAM_CHECKED) is None:
                    self.model = STREAM_CHECKED
        if self.checked:
            facts = await asyncio.to_thread(detector_facts, self.options.url)
            self.cuts = facts.cuts
        served = await asyncio.to_thread(served_identities, self.options.url)
        self.identities, self.default_identity = served.identities, served.default
        LOG.info("gateway on http://%s:%d streams through %s at %s (identities: %s)",
                 self.options.host, self.options.port, self.model, self.options.url,
                 ", ".join(self.identities))

    async def close_connection(self, _app: web.Application) -> None:
        """Close the gRPC channel when the gateway stops."""
        if self.connection is not None:
            await self.connection.close()

    async def page(self, request: web.Request) -> web.Response:
        """The page and its scripts (the only files served)."""
        name = STATIC[0] if request.path == "/" else request.path.lstrip("/")
        text = resources.files("swaptron.web").joinpath("static", name).read_text()
        suffix = name[name.rfind("."):]
        return web.Response(text=text, content_type=CONTENT_TYPES[suffix],
                            headers={"Cache-Control": "no-store",
                                     "X-Content-Type-Options": "nosniff"})

    def refusal(self, request: web.Request) -> web.Response | None:
        """The HTTP answer that refuses a websocket upgrade (wrong host, origin or token), else
        None. On loopback the Host must be a loopback name too: a page whose own name was
        rebound to 127.0.0.1 (DNS rebinding) would otherwise pass the Origin check."""
        hostname = (request.url.host or "").strip("[]")
        if is_loopback(self.options.host) and not is_loopback(hostname):
            return web.Response(status=403, text=f"host {hostname} is not this gateway")
        origin = request.headers.get("Origin")
        own = {f"{request.scheme}://{request.host}", *self.options.allow_origins}
        if origin is not None and origin not in own:
            return web.Response(status=403, text=f"origin {origin} is not allowed")
        if self.options.token is not None:
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.options.token.encode()):
                return web.Response(status=401, text="a valid token is required")
        return None

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """One browser session."""
        refused = self.refusal(request)
        if refused is not None:
            LOG.warning("refused a websocket from %s: %s", request.remote, refused.text)
            return refused
        socket = web.WebSocketResponse(max_msg_size=self.options.max_message_bytes,
                                       heartbeat=20.0)
        await socket.prepare(request)
        if self.sessions >= self.options.max_sessions:
            await socket.send_str(json.dumps({
                "type": "busy", "message": f"server busy: {self.sessions} sessions are live, "
                                           "the most it takes; try again later"}))
            await socket.close(code=TRY_AGAIN_LATER, message=b"server busy")
            return socket
        self.sessions += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released, self.sessions = True, self.sessions - 1

        try:
            await self.serve_session(socket, release)
        finally:
            release()
        return socket

    async def serve_session(self, socket: web.WebSocketResponse,
                            release: Callable[[], None]) -> None:
        """Bridge a websocket to a Triton stream until either side ends; `release` frees the
        session's place as soon as the page is gone (its stream then drains and ends)."""
        options = StreamOptions(url=self.options.url, model=self.model,
                                outputs=answer_outputs(self.model))
        session = PageSession(self.connection,  # type: ignore[arg-type]  (opened at startup)
                              options, self.options.limits, self.sender(socket),
                              self.identities, self.cuts)
        await socket.send_str(json.dumps({
            "type": "hello", "identities": self.identities, "default": self.default_identity,
            "faces": list(FACE_CHOICES), "checked": self.checked, "model": self.model,
            "max_fps": self.options.limits.max_fps,
            "max_inflight": self.options.limits.max_inflight}))
        stream = asyncio.create_task(session.run())
        try:
            await self.read_page(socket, session, stream)
        finally:
            release()
            await session.finish()
            with contextlib.suppress(asyncio.TimeoutError, StreamError, *CONNECTION_ERRORS):
                await asyncio.wait_for(stream, 15.0)
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)

    def sender(self, socket: web.WebSocketResponse) -> Send:
        """Send to the page; a page that went away is not an error."""
        async def send(message: bytes | str) -> None:
            if socket.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(message, bytes):
                    await socket.send_bytes(message)
                else:
                    await socket.send_str(message)
        return send

    async def read_page(self, socket: web.WebSocketResponse, session: PageSession,
                        stream: asyncio.Task[None]) -> None:
        """Take the page's messages until it leaves or the Triton stream ends."""
        stream.add_done_callback(lambda _task: asyncio.ensure_future(
            self.stream_ended(socket, stream)))
        async for message in socket:
            if message.type == WSMsgType.BINARY:
                try:
                    await session.frame(message.data)
                except PageMessageError as error:
                    await session.send(json.dumps({"type": "failed", "t": None,
                                                   "error": str(error)}))
            elif message.type == WSMsgType.TEXT:
                await self.control(session, message.data)
            elif message.type == WSMsgType.ERROR:
                LOG.warning("websocket closed: %s", socket.exception())

    async def control(self, session: PageSession, text: str) -> None:
        """A page's text message: the identity and face choice."""
        try:
            message = json.loads(text)
            if not isinstance(message, dict) or message.get("type") != "choose":
                raise PageMessageError("the only text message is {\"type\": \"choose\", ...}")
            session.choose(message)
        except json.JSONDecodeError as error:
            await session.send(json.dumps({"type": "error",
                                           "message": f"a text message must be JSON: {error}"}))
        except PageMessageError as error:
            await session.send(json.dumps({"type": "error", "message": str(error)}))

    async def stream_ended(self, socket: web.WebSocketResponse, stream: asyncio.Task[None]
                           ) -> None:
        """Tell the page why its Triton stream ended early (a refusal or a lost server)."""
        if stream.cancelled() or socket.closed:
            return
        error = stream.exception()
        if error is None:
            return
        reason = first_line(error)
        if isinstance(error, grpc.RpcError | StreamError | ConnectionError):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(json.dumps({"type": "refused", "message": reason}))
                await socket.close(code=WSCloseCode.GOING_AWAY, message=b"stream ended")


async def serve(options: GatewayOptions, ready: asyncio.Event | None = None) -> None:
    """Run the gateway until cancelled."""
    gateway = Gateway(options)
    runner = web.AppRunner(gateway.app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
