"""The model server's one HTTP door, in the ``python -m serving`` process.

Ray Serve's own proxy reads a body before anyone can refuse it, gives a slow client's head all
the time it wants and knows no token, so it is not started: this front speaks HTTP/1.1 itself
(h11 over asyncio) and hands only complete, checked requests to the replicas. Before any body
byte is read it checks the token (401), the announced length (413) and the requests in flight
(503 with Retry-After); while reading, the head and the body each have a deadline and a chunked
body the same cap. Slow or idle connections hold no slot, so they cannot starve real requests.
``GET /healthz`` stays open for liveness probes and says only that the server is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qsl

import h11

from model.errors import ImageError
from model.limits import DEFAULT_LIMITS, check_upload_size
from serving.wire import DECODED_HEADER, ERROR_KEY

logger = logging.getLogger("serving")
READ_BYTES = 65_536
LINGER_S = 2.0  # see _linger: at most this long
LINGER_BYTES = 1_000_000  # and at most this much


@dataclass(frozen=True)
class FrontLimits:
    """What one client may take of the server: time, bytes, slots."""

    head_timeout_s: float = 10.0  # a request's line and headers, also the keep-alive idle time
    body_timeout_s: float = 30.0  # the whole body, once its head is accepted
    max_head_bytes: int = 16_384
    max_body_bytes: int = DEFAULT_LIMITS.max_upload_bytes
    max_buffered_bytes: int = 8 * DEFAULT_LIMITS.max_upload_bytes  # bodies being read, all
    max_in_flight: int = 32  # predictions at the replicas (each body complete)
    max_connections: int = 1024  # open connections; each holds at most a head
    answer_timeout_s: float = 60.0  # the replicas' answer (the app's client waits 30 s)
    retry_after_s: int = 1
    drain_s: float = 3.0  # on stop, how long answers already started may take


class Backend(Protocol):
    """The replicas, as the front calls them."""

    async def metadata(self) -> dict: ...

    async def predict(self, body: bytes, params: dict[str, str], decoded: str | None
                      ) -> tuple[int, dict]: ...


class Refused(Exception):
    """A request answered without reading the rest of it; its connection then closes."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status, self.headers = status, headers


class _Closed(Exception):
    """The client went away, stalled past its deadline or broke the protocol."""


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class Front:
    """The HTTP server in front of ``backend``; ``token`` None lets every request through
    (allowed on a loopback address only, see serving.__main__)."""

    def __init__(self, backend: Backend, token: str | None,
                 limits: FrontLimits = FrontLimits()) -> None:
        self.backend, self.limits = backend, limits
        self._expected = None if token is None else _digest(f"Bearer {token}")
        self.in_flight = 0
        self.buffered = 0  # body bytes announced or received by requests not yet answered
        self._connections: set[asyncio.Task] = set()

    async def listen(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._accept, host, port)

    async def close(self, server: asyncio.Server) -> None:
        """Stop accepting; let answers already started finish within the drain time."""
        server.close()
        deadline = asyncio.get_running_loop().time() + self.limits.drain_s
        while self.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.limits.max_connections:
            writer.close()
            return
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await self._converse(reader, writer)
        except (_Closed, TimeoutError, h11.RemoteProtocolError, ConnectionError,
                asyncio.CancelledError):
            pass  # a client gone, stalled or broken: its connection closes, nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> None:
        connection = h11.Connection(h11.SERVER,
                                    max_incomplete_event_size=self.limits.max_head_bytes)
        while True:
            try:
                event = await self._next(connection, reader, self.limits.head_timeout_s)
            except h11.RemoteProtocolError as error:
                _send_raw(writer, error.error_status_hint, "not an HTTP/1.1 request this "
                                                           "server can read")
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            status, content, headers = await self._answer(event, connection, reader, writer)
            _send(connection, writer, status, content, headers)
            await writer.drain()
            _skip_empty_body(connection)
            if not (connection.our_state is connection.their_state is h11.DONE):
                await _linger(reader, writer)
                return
            connection.start_next_cycle()

    async def _answer(self, request: h11.Request, connection: h11.Connection,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> tuple[int, dict, tuple]:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        path, method = path.rstrip("/"), request.method.decode("latin-1")
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in request.headers}
        try:
            if path == "/healthz" and method == "GET":
                return 200, {"status": "ok"}, ()
            if path not in ("/metadata", "/predict"):
                return 404, {ERROR_KEY: f"no {method} {path or '/'} here: GET /healthz, "
                                        "GET /metadata or POST /predict"}, ()
            self._authorise(headers.get("authorization", ""))
            if path == "/metadata" and method == "GET":
                return 200, await self._backend(self.backend.metadata()), ()
            if path == "/predict" and method == "POST":
                status, content = await self._predict(headers, query, connection, reader, writer)
                return status, content, ()
            return 405, {ERROR_KEY: f"{path} does not take {method}"}, ()
        except Refused as refusal:
            return refusal.status, {ERROR_KEY: str(refusal)}, (*refusal.headers,
                                                               ("connection", "close"))

    def _authorise(self, given: str) -> None:
        if self._expected is not None and not hmac.compare_digest(_digest(given),
                                                                  self._expected):
            raise Refused(401, "This model server needs its token (Authorization: Bearer ...).",
                          (("www-authenticate", "Bearer"),))

    async def _predict(self, headers: dict[str, str], query: str, connection: h11.Connection,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> tuple[int, dict]:
        announced = int(headers.get("content-length", 0))
        if announced > self.limits.max_body_bytes:
            raise Refused(413, _too_large(announced))
        held = [0]
        try:
            self._hold(held, announced)
            body = await self._body(connection, reader, writer, held)
            if self.in_flight >= self.limits.max_in_flight:
                raise _busy(self.limits)
            self.in_flight += 1
            try:
                return await self._backend(self.backend.predict(
                    body, dict(parse_qsl(query)), headers.get(DECODED_HEADER.lower())))
            finally:
                self.in_flight -= 1
        finally:
            self.buffered -= held[0]

    def _hold(self, held: list[int], size: int) -> None:
        """Count ``size`` more body bytes for this request (``held[0]``), or refuse it (503)
        when all requests' bodies together would pass the budget."""
        if size > held[0]:
            if self.buffered + size - held[0] > self.limits.max_buffered_bytes:
                raise _busy(self.limits)
            self.buffered += size - held[0]
            held[0] = size

    async def _body(self, connection: h11.Connection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, held: list[int]) -> bytes:
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.limits.body_timeout_s
        if connection.they_are_waiting_for_100_continue:
            writer.write(connection.send(h11.InformationalResponse(status_code=100)))
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                event = await self._next(connection, reader, remaining)
            except TimeoutError:
                raise Refused(408, f"The request's body did not arrive within "
                                   f"{self.limits.body_timeout_s:g} s.") from None
            if isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            if not isinstance(event, h11.Data):
                raise _Closed
            size += len(event.data)
            if size > self.limits.max_body_bytes:
                raise Refused(413, f"the file is more than the "
                                   f"{self.limits.max_body_bytes / 1e6:.0f} MB upload limit.")
            self._hold(held, size)
            chunks.append(event.data)

    async def _backend(self, call) -> dict | tuple[int, dict]:
        try:
            return await asyncio.wait_for(call, self.limits.answer_timeout_s)
        except Exception:  # the replicas' failure, not the client's: log it, answer plainly
            logger.exception("the replicas could not answer")
            raise Refused(500, "The model server could not analyse this image (an internal "
                               "error, logged on the server).") from None

    @staticmethod
    async def _next(connection: h11.Connection, reader: asyncio.StreamReader,
                    within_s: float) -> h11.Event:
        """The connection's next event, read within ``within_s`` (TimeoutError past it)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while (event := connection.next_event()) is h11.NEED_DATA:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            connection.receive_data(await asyncio.wait_for(reader.read(READ_BYTES), remaining))
        return event


def _busy(limits: FrontLimits) -> Refused:
    return Refused(503, "The model server is busy; try again in a moment.",
                   (("retry-after", str(limits.retry_after_s)),))


def _too_large(size: int) -> str:
    """The app's own message for a file over the upload limit."""
    try:
        check_upload_size(size, "the file", DEFAULT_LIMITS)
    except ImageError as refusal:
        return str(refusal)
    return f"the file is {size} bytes"


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After answering a request whose body was not read: stop writing, then drop what the
    client still sends for a moment (bounded), so that it reads the answer, not a reset."""
    if writer.can_write_eof():
        writer.write_eof()
    deadline = asyncio.get_running_loop().time() + LINGER_S
    dropped = 0
    with contextlib.suppress(TimeoutError, ConnectionError):
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0 and (
                dropped < LINGER_BYTES):
            data = await asyncio.wait_for(reader.read(READ_BYTES), remaining)
            if not data:
                return
            dropped += len(data)


def _skip_empty_body(connection: h11.Connection) -> None:
    """Take the end of a request without a body (a GET), already in h11's buffer."""
    while connection.their_state is h11.SEND_BODY:
        event = connection.next_event()
        if event is h11.NEED_DATA or isinstance(event, h11.Data):
            return


def _send(connection: h11.Connection, writer: asyncio.StreamWriter, status: int,
          content: dict, headers: tuple) -> None:
    body = json.dumps(content).encode()
    response = h11.Response(status_code=status, reason=HTTPStatus(status).phrase, headers=[
        ("content-type", "application/json"), ("content-length", str(len(body))), *headers])
    writer.write(connection.send(response) + connection.send(h11.Data(data=body))
                 + connection.send(h11.EndOfMessage()))


def _send_raw(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """An answer to a request h11 could not parse, so without its help; then close."""
    body = json.dumps({ERROR_KEY: message}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json"
            f"\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n")
    writer.write(head.encode() + body)
