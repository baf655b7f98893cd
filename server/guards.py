"""The guards in front of the reader's web server: bounded uploads, slow and idle clients, open
connections, and the security headers of every answer.

    from reader.guards import GuardedRequests, guarded_server
    app.add_middleware(GuardedRequests)          # uploads counted, capped and timed before the app
    guarded_server(app, "127.0.0.1", 8000).run()  # uvicorn with deadlines on headers and idle clients

Everything here is plain ASGI and uvicorn: it knows nothing of digits, so serve.py's routes stay
about reading and these limits have one home.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from http import HTTPStatus

import h11
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process

MAX_UPLOAD_BYTES = 1_000_000
# A phone saves a photo of 3-15 MB; its digits read as well from a copy of 1,600 px, under 1 MB.
SHRINK_PHOTO = (
    "shrink a photo to at most 1,600 px on its long side, saved as JPEG, as the page does itself "
    "(for example `convert photo.jpg -resize 1600x1600 small.jpg`)"
)
UPLOAD_SECONDS = 20.0  # to receive a whole upload: 1 MB at 50 KB/s, a poor mobile link
# To receive a request's headers, from connecting or from the last answer: a browser sends them in
# one packet, and 5 s is many round trips of a poor mobile link.
HEADER_SECONDS = 5.0
KEEP_ALIVE_SECONDS = 5  # an idle connection is closed after this
MAX_CONNECTIONS = 64  # open at once; past it, new requests get 503 at once
# Open at once from one client address, so that one client cannot take all MAX_CONNECTIONS (a
# browser opens at most 6 to a server; this leaves room for a few behind one NAT). Behind a proxy
# every connection comes from the proxy's address: serve.py's --client-connections raises it.
MAX_CLIENT_CONNECTIONS = 16
RETRY_AFTER_BUSY = "1"  # seconds, in such a 503
# On SIGTERM, requests still running get this long to finish (a reading's own deadline is shorter).
GRACEFUL_SECONDS = 15
# A worker process that dies is replaced at most this many times within the window; past it its
# place stays empty and the other workers serve on (a worker that keeps dying is a fault to look
# at, not to hide).
MAX_RESTARTS = 3
RESTART_WINDOW = 600.0  # seconds
# Every response: no content sniffing, no framing by other sites, and pages load only files of
# this server. The API docs pages start Swagger UI or ReDoc with an inline script (and ReDoc styles
# itself inline); only they may.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
BASE_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
# The page compiles ONNX Runtime Web's WebAssembly (reader in the browser); nothing else runs inline.
PAGE_POLICY = BASE_POLICY + "; script-src 'self' 'wasm-unsafe-eval'"
DOCS_POLICY = (
    BASE_POLICY + "; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; worker-src blob:"
)
DOCS_PATHS = ("/docs", "/redoc")
LOGGER = logging.getLogger("uvicorn.error")


async def send_error(send, status: int, detail: str, extra_headers: tuple = ()) -> None:
    """Answer `status` with FastAPI's JSON error form, and close the connection: the request's
    unread remainder is not worth reading."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def raw_error(status: int, detail: str, extra_headers: tuple = ()) -> bytes:
    """A whole answer of `status` in the API's JSON error form with the security headers, as bytes
    to write on a connection where no request (or no valid one) has been received."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *SECURITY_HEADERS,
        (b"content-security-policy", PAGE_POLICY.encode()),
        *extra_headers,
    ]
    head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()
    return head + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body


def upload_refusal(headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """Why a POST with these headers is refused before its body is read (None: it is not)."""
    length = headers.get(b"content-length")
    if length is not None and b"transfer-encoding" in headers:
        # Which of the two frames the body is where proxies and servers disagree: refuse both.
        return 400, "send Content-Length or Transfer-Encoding, not both"
    if length is None or not length.isdigit():
        return 411, "send a Content-Length header"
    if int(length) > MAX_UPLOAD_BYTES:
        return 413, f"upload is {int(length):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}: {SHRINK_PHOTO}"
    return None


class GuardedRequests:
    """ASGI middleware in front of the app. A POST's body is received here, whole, before the app
    sees it: the bytes that arrive are counted (whatever the headers claim) and refused past
    MAX_UPLOAD_BYTES or after `upload_seconds`. Every response carries SECURITY_HEADERS."""

    def __init__(self, app, upload_seconds: float = UPLOAD_SECONDS):
        self.app = app
        self.upload_seconds = upload_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = DOCS_POLICY if scope["path"] in DOCS_PATHS else PAGE_POLICY
        headers = [*SECURITY_HEADERS, (b"content-security-policy", policy.encode())]

        async def secured_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        sent = dict(scope["headers"])
        if scope["method"] != "POST":
            if sent.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in sent:
                # Unread, a body would keep the connection waiting for it, past every time limit.
                return await send_error(secured_send, 400, f"only POST takes a body, not {scope['method']}")
            return await self.app(scope, receive, secured_send)
        refusal = upload_refusal(sent)
        if refusal:
            return await send_error(secured_send, *refusal)
        body = await self.whole_body(receive, secured_send)
        if body is not None:
            await self.app(scope, delivering(body, receive), secured_send)

    async def whole_body(self, receive, send) -> bytes | None:
        """The request's body, whole; or None once the client has left or been answered with an
        error (too large, too slow)."""
        body = bytearray()
        try:
            async with asyncio.timeout(self.upload_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None  # the client left: nobody to answer
                    body += message.get("body", b"")
                    if len(body) > MAX_UPLOAD_BYTES:
                        detail = f"upload is over the limit of {MAX_UPLOAD_BYTES:,} bytes: {SHRINK_PHOTO}"
                        return await send_error(send, 413, detail)
                    if not message.get("more_body"):
                        return bytes(body)
        except TimeoutError:
            detail = f"the upload took over {self.upload_seconds:g} s; send it again on a faster link"
            return await send_error(send, 408, detail)


def delivering(body: bytes, receive):
    """An ASGI receive that gives the app `body` whole, then whatever `receive` brings (nothing more
    than a disconnect)."""
    delivered = False

    async def received():
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return received


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers have not all
    arrived `header_seconds` after it opened or after its last answer (uvicorn has no such limit,
    so a client sending headers a byte at a time could hold a connection for ever), answering a
    client address's connection past `client_connections` with a 503 and closing it, and giving
    its own answers (past its limit of connections, to a malformed request) in the API's JSON
    with the security headers, where uvicorn answers in plain text."""

    def __init__(self, *args, header_seconds: float, client_connections: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_seconds = header_seconds
        self.client_connections = client_connections
        self.header_deadline: asyncio.TimerHandle | None = None
        # uvicorn's own check, made here instead, at the same point: as the request's app starts.
        self.connection_limit, self.limit_concurrency = self.limit_concurrency, None
        self.app = functools.partial(self.within_limit, self.app)

    async def within_limit(self, app, scope, receive, send):
        """`app`, unless this server holds more connections or requests than its limit; then a 503."""
        limit = self.connection_limit
        # The request's own task is among `tasks` by now; uvicorn counts before adding it.
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) > limit):
            detail = f"the server is at its limit of {limit} open connections: try again shortly"
            return await send_error(send, 503, detail, ((b"retry-after", RETRY_AFTER_BUSY.encode()),))
        return await app(scope, receive, send)

    def await_headers(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        self.header_deadline = self.loop.call_later(self.header_seconds, self.close_if_no_headers)

    def close_if_no_headers(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport):
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        held = sum(1 for other in self.connections if other.client and other.client[0] == address)
        if address is not None and held > self.client_connections:
            detail = (
                f"{address} holds {self.client_connections} open connections, its limit: close some first"
            )
            transport.write(raw_error(503, detail, ((b"retry-after", RETRY_AFTER_BUSY.encode()),)))
            return transport.close()
        self.await_headers()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse (a malformed request line or header)."""
        self.transport.write(
            raw_error(400, "not a valid HTTP/1.1 request: check its request line and headers")
        )
        self.transport.close()

    def on_response_complete(self):
        super().on_response_complete()
        self.await_headers()

    def connection_lost(self, exc):
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        super().connection_lost(exc)


def guarded_config(
    app,
    host: str,
    port: int,
    header_seconds: float = HEADER_SECONDS,
    client_connections: int = MAX_CLIENT_CONNECTIONS,
    **options,
) -> uvicorn.Config:
    """uvicorn's settings for `app` with limits on slow and idle clients and on open connections,
    of all clients and of each client address (per process); `options` are further uvicorn.Config
    settings."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=functools.partial(
            HeaderDeadlineProtocol, header_seconds=header_seconds, client_connections=client_connections
        ),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        **options,
    )


def guarded_server(app, host: str, port: int, **limits) -> uvicorn.Server:
    """uvicorn serving `app` in this process, with guarded_config's limits (`limits`: its
    header_seconds and client_connections)."""
    return uvicorn.Server(guarded_config(app, host, port, **limits))


class LimitedRestarts(Multiprocess):
    """uvicorn's supervisor of worker processes, replacing a worker that dies, but not one that
    keeps dying: a worker whose line has died MAX_RESTARTS + 1 times within RESTART_WINDOW seconds
    is not replaced, and the others serve on. A replacement that fails to start (a model file
    damaged during a deploy) is not replaced either, where uvicorn would stop every worker. The
    server stops when no worker is left, or when a first start fails: the app cannot start at all.

    The bookkeeping follows each process, not its place in the list, which uvicorn's own signals
    (SIGTTIN adds a worker, SIGTTOU removes one, SIGHUP replaces them all) change."""

    def __init__(self, config: uvicorn.Config, sockets: list) -> None:
        super().__init__(config, sockets)
        # The replacements' lines' deaths: a process without an entry is one of the first started.
        self.deaths: dict[Process, list[float]] = {}
        self.failed = False  # stopped for want of a working worker, not by a signal

    def keep_subprocess_alive(self) -> None:
        for process in list(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # it may be hung rather than dead
            process.join()
            self.replace(process)

    def replace(self, process: Process) -> None:
        """Start a new worker in place of `process`, which has died, or leave its place empty."""
        now = time.monotonic()
        first_start = process not in self.deaths
        deaths = [when for when in self.deaths.pop(process, []) if now - when < RESTART_WINDOW] + [now]
        if process.exitcode == STARTUP_FAILURE and first_start:
            return self.stop(f"worker [{process.pid}] failed to start: the server stops")
        if process.exitcode == STARTUP_FAILURE or len(deaths) > MAX_RESTARTS:
            self.processes.remove(process)
            why = (
                "its replacement failed to start" if process.exitcode == STARTUP_FAILURE else "it keeps dying"
            )
            LOGGER.error(
                f"worker [{process.pid}] not replaced: {why}; {len(self.processes)} worker(s) serve on"
            )
            if not self.processes:
                self.stop("no worker is left: the server stops")
            return
        LOGGER.warning(f"worker [{process.pid}] died; replacing it ({len(deaths)} of {MAX_RESTARTS})")
        new = Process(self.config, self.sockets)
        new.start()
        self.processes[self.processes.index(process)] = new
        self.deaths[new] = deaths

    def stop(self, message: str) -> None:
        LOGGER.error(message)
        self.failed = True
        self.should_exit.set()
