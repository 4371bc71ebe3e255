"""A seeded, fault-injecting HTTP/1.1 proxy for S3 traffic in tests.

Point a boto3 client's ``endpoint_url`` at :attr:`FaultProxy.endpoint_url` and every request
goes through this proxy on 127.0.0.1 to the real S3 server (moto, SeaweedFS). Per request, a
seeded :class:`random.Random` decides whether to inject one fault:

- ``slowdown``: answer ``503 SlowDown`` with an S3 XML error body; nothing is forwarded;
- ``reset``: reset the client connection (``SO_LINGER`` 0, then close) before forwarding;
- ``delay``: wait ``delay_seconds``, then forward normally;
- ``drop_response``: forward the request, read the whole upstream answer, then reset the client
  connection: the server did the write but the client never hears (the ambiguous commit).

Request bytes are forwarded unchanged, including the ``Host`` header that boto3 signed with the
proxy's address, so servers that verify SigV4 against the Host they receive keep accepting the
requests. Bodies are streamed in bounded chunks (Content-Length and chunked framing), so
multi-GiB transfers never sit in memory, and ``Expect: 100-continue`` is passed through: the
upstream's interim ``100 Continue`` reaches the client, which only then sends the body.

One thread serves each client connection and owns one upstream connection, so keep-alive on
the client side is keep-alive upstream too. Decisions are drawn in the order requests arrive:
with one client sending requests one at a time, the same seed gives the same fault sequence.

Example::

    with FaultProxy(upstream=moto_url, seed=7, rates=FaultRates(slowdown=0.1)) as proxy:
        s3 = boto3.client("s3", endpoint_url=proxy.endpoint_url, ...)
        ...
        proxy.set_rates(FaultRates())  # faults off, then verify what landed
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from email.utils import formatdate
from types import TracebackType
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

__all__ = [
    "Decision",
    "Fault",
    "FaultProxy",
    "FaultRates",
    "FaultStats",
    "Matcher",
    "match_requests",
]

Matcher = Callable[[str, str], bool]
"""Called with the request method and target (path plus query); True makes it fault-eligible."""

_CHUNK = 256 * 1024
_MAX_LINE = 64 * 1024
_MAX_HEAD = 256 * 1024
_DRAIN_SECONDS = 1.0


class Fault(enum.StrEnum):
    """The kinds of fault the proxy can inject into one request."""

    SLOWDOWN = "slowdown"
    RESET = "reset"
    DELAY = "delay"
    DROP_RESPONSE = "drop_response"


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault per eligible request; the rest is forwarded untouched."""

    slowdown: float = 0.0
    reset: float = 0.0
    delay: float = 0.0
    drop_response: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"rate {f.name}={value} is outside [0, 1]")
        if self.total > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {self.total}, more than 1")

    @classmethod
    def uniform(cls, total: float) -> FaultRates:
        """Split ``total`` evenly over the four kinds (``uniform(0.1)`` is 2.5% each).

        Args:
            total: Overall share of eligible requests that get some fault.

        Returns:
            The rates.
        """
        return cls(total / 4, total / 4, total / 4, total / 4)

    @property
    def total(self) -> float:
        """Share of eligible requests that get some fault."""
        return self.slowdown + self.reset + self.delay + self.drop_response


@dataclass(frozen=True)
class FaultStats:
    """A snapshot of what the proxy did so far."""

    connections: int = 0
    """Client connections accepted."""
    upstream_connections: int = 0
    """Connections opened to the upstream server."""
    requests: int = 0
    """Requests whose head was read from a client."""
    forwarded: int = 0
    """Requests sent upstream (including delayed and dropped-response ones)."""
    slowdown: int = 0
    reset: int = 0
    delay: int = 0
    drop_response: int = 0

    @property
    def faults(self) -> int:
        """Requests that got any fault."""
        return self.slowdown + self.reset + self.delay + self.drop_response

    def count(self, fault: Fault) -> int:
        """Number of requests that got ``fault``.

        Args:
            fault: The fault kind.

        Returns:
            The count.
        """
        return int(getattr(self, fault.value))


@dataclass(frozen=True)
class Decision:
    """What the proxy decided for one request (``fault`` is None when forwarded untouched)."""

    method: str
    target: str
    fault: Fault | None


def match_requests(methods: str | None = None, contains: str | None = None) -> Matcher:
    """Build a matcher that limits faults to some methods and/or targets.

    Args:
        methods: Space-separated methods (``"PUT POST"``); None matches every method.
        contains: A substring the request target must contain (a key or key prefix, for
            instance ``"/versions/"``); None matches every target.

    Returns:
        A matcher for :class:`FaultProxy`.
    """
    wanted = None if methods is None else {m.upper() for m in methods.split()}

    def match(method: str, target: str) -> bool:
        if wanted is not None and method.upper() not in wanted:
            return False
        return contains is None or contains in target

    return match


class _ClosedError(Exception):
    """The peer closed the connection (or it was torn down) in the middle of a message."""


class _Reader:
    """Buffered reads from a socket: whole lines for heads, bounded chunks for bodies."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def pending(self) -> int:
        return len(self._buf)

    def readline(self) -> bytes:
        """One line including its CRLF; b"" on a clean EOF before any byte."""
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > _MAX_LINE:
                raise _ClosedError("line too long")
            start = len(self._buf)
            data = self._sock.recv(_CHUNK)
            if not data:
                if self._buf:
                    raise _ClosedError("EOF in the middle of a line")
                return b""
            self._buf += data

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (at least one); raises on EOF."""
        if self._buf:
            data = bytes(self._buf[:limit])
            del self._buf[:limit]
            return data
        data = self._sock.recv(min(limit, _CHUNK))
        if not data:
            raise _ClosedError("EOF in the middle of a body")
        return data

    def read_until_eof(self) -> Iterator[bytes]:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            yield data
        while True:
            data = self._sock.recv(_CHUNK)
            if not data:
                return
            yield data


@dataclass
class _Head:
    """A request or response head: its exact bytes plus the parsed fields the proxy needs."""

    raw: bytes
    start: list[str]
    headers: dict[str, str]

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for t in self.header(name).split(",") if t.strip()}

    def without(self, name: str) -> bytes:
        """The raw head minus every field called ``name``."""
        prefix = name.lower().encode("latin-1") + b":"
        lines = self.raw.splitlines(keepends=True)
        return b"".join(line for line in lines if not line.lower().startswith(prefix))


def _read_head(reader: _Reader) -> _Head | None:
    """Read one message head; None on a clean EOF before it starts."""
    raw = bytearray()
    line = reader.readline()
    # RFC 9112 lets a server ignore empty lines before a request line.
    while line in (b"\r\n", b"\n"):
        line = reader.readline()
    if not line:
        return None
    raw += line
    start = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = reader.readline()
        if not line:
            raise _ClosedError("EOF inside a message head")
        raw += line
        if len(raw) > _MAX_HEAD:
            raise _ClosedError("message head too large")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        value = value.strip()
        # Repeated headers fold into one comma list, which is all the framing logic needs.
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return _Head(bytes(raw), start, headers)


def _copy_body(head: _Head, reader: _Reader, send: Callable[[bytes], object]) -> None:
    """Copy one message body as framed by ``head`` (Content-Length or chunked), byte for byte."""
    if "chunked" in head.tokens("transfer-encoding"):
        while True:
            size_line = reader.readline()
            if not size_line:
                raise _ClosedError("EOF before a chunk size")
            send(size_line)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _ClosedError(f"bad chunk size line {size_line!r}") from exc
            if size == 0:
                while True:  # trailer fields, then the final empty line
                    line = reader.readline()
                    if not line:
                        raise _ClosedError("EOF inside chunked trailers")
                    send(line)
                    if line in (b"\r\n", b"\n"):
                        return
            remaining = size + 2  # the chunk data and its CRLF
            while remaining:
                data = reader.read_some(remaining)
                send(data)
                remaining -= len(data)
    length = head.header("content-length")
    remaining = int(length) if length else 0
    while remaining > 0:
        data = reader.read_some(remaining)
        send(data)
        remaining -= len(data)


def _response_is_framed(response: _Head, method: str, status: int) -> bool:
    """Whether the response's end is known without the upstream closing the connection."""
    return (
        method == "HEAD"
        or status in (204, 304)
        or "chunked" in response.tokens("transfer-encoding")
        or bool(response.header("content-length"))
    )


def _has_request_body(head: _Head) -> bool:
    if "chunked" in head.tokens("transfer-encoding"):
        return True
    length = head.header("content-length")
    return bool(length) and int(length) > 0


def _reset(sock: socket.socket) -> None:
    """Abort a connection with a TCP RST instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _close_gracefully(sock: socket.socket) -> None:
    """FIN, then drain what the peer still sends, so our last answer is not lost to an RST."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.1)
        deadline = time.monotonic() + _DRAIN_SECONDS
        while time.monotonic() < deadline and sock.recv(_CHUNK):
            pass
    with contextlib.suppress(OSError):
        sock.close()


def _slowdown_response(method: str, target: str, request_id: str, close: bool) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>SlowDown</Code>"
        "<Message>Please reduce your request rate.</Message>"
        f"<Resource>{escape(target.split('?', 1)[0])}</Resource>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    head = [
        "HTTP/1.1 503 Slow Down",
        f"Date: {formatdate(usegmt=True)}",
        "Server: faultproxy",
        f"x-amz-request-id: {request_id}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
    ]
    if close:
        head.append("Connection: close")
    payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    return payload if method == "HEAD" else payload + body


class _BodyPump:
    """Copies one request body client -> upstream in its own thread.

    The body runs beside the response reader because the client decides when to send it
    (after a 100 Continue, or after giving up waiting for one), and because an upstream may
    answer early without reading the body at all.
    """

    def __init__(self, head: _Head, reader: _Reader, upstream: socket.socket) -> None:
        self.error: BaseException | None = None
        self._head = head
        self._reader = reader
        self._upstream = upstream
        self._thread = threading.Thread(target=self._run, name="faultproxy-body", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            _copy_body(self._head, self._reader, self._upstream.sendall)
        except (OSError, _ClosedError, ValueError) as exc:
            self.error = exc
            # Unblocks the response reader, which would otherwise wait for an answer the
            # upstream can never give to a truncated body.
            with contextlib.suppress(OSError):
                self._upstream.shutdown(socket.SHUT_RDWR)

    def done(self, timeout: float | None = 0.0) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


class _Connection:
    """Serves one client connection, request after request, over one upstream connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self._proxy = proxy
        self._client = client
        self._client_reader = _Reader(client)
        self._upstream: socket.socket | None = None
        self._upstream_reader: _Reader | None = None
        self._pump: _BodyPump | None = None

    def serve(self) -> None:
        try:
            while not self._proxy._stopping.is_set() and self._serve_one():
                pass
        except (OSError, _ClosedError, ValueError):
            self._stop_pump()
            _reset(self._client)
        finally:
            self._stop_pump()
            self._close_upstream()
            with contextlib.suppress(OSError):
                self._client.close()
            self._proxy._forget(self._client)

    # -- upstream connection ---------------------------------------------------------------

    def _connect_upstream(self) -> tuple[socket.socket, _Reader]:
        if self._upstream is not None and self._upstream_reader is not None:
            # An idle keep-alive connection the server closed reads as EOF right away.
            readable, _, _ = select.select([self._upstream], [], [], 0)
            if not readable and not self._upstream_reader.pending():
                return self._upstream, self._upstream_reader
            self._close_upstream()
        sock = socket.create_connection(self._proxy._upstream_addr, self._proxy._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._proxy._count("upstream_connections")
        self._proxy._track(sock)
        self._upstream, self._upstream_reader = sock, _Reader(sock)
        return sock, self._upstream_reader

    def _stop_pump(self) -> None:
        """Stop a body copy still waiting for client bytes, before the client socket closes."""
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            # SHUT_RD wakes the blocked recv without sending anything to the client; closing
            # the descriptor under a blocked reader would not.
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_RD)
            pump.done(timeout=5)

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            # shutdown first: it also wakes a body copy blocked sending on this socket.
            with contextlib.suppress(OSError):
                self._upstream.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._upstream.close()
            self._proxy._forget(self._upstream)
        self._upstream = None
        self._upstream_reader = None

    # -- one request -----------------------------------------------------------------------

    def _serve_one(self) -> bool:
        """Handle one request; False when the client connection must end."""
        head = _read_head(self._client_reader)
        if head is None:
            return False
        method = head.start[0].upper()
        target = head.start[1] if len(head.start) > 1 else ""
        fault = self._proxy._decide(method, target)
        client_close = "close" in head.tokens("connection") or (
            len(head.start) > 2 and head.start[2].upper() == "HTTP/1.0"
        )

        if fault is Fault.RESET:
            _reset(self._client)
            return False

        if fault is Fault.SLOWDOWN:
            expects_continue = "100-continue" in head.tokens("expect")
            has_body = _has_request_body(head)
            if has_body and not expects_continue:
                _copy_body(head, self._client_reader, lambda _data: None)
            # A client told to wait for 100 Continue may or may not send its body now; only
            # closing the connection keeps the next request's framing unambiguous.
            close = client_close or (has_body and expects_continue)
            request_id = self._proxy._request_id()
            self._client.sendall(_slowdown_response(method, target, request_id, close))
            if close:
                _close_gracefully(self._client)
                return False
            return True

        if fault is Fault.DELAY and self._proxy._stopping.wait(self._proxy.delay_seconds):
            return False

        return self._forward(
            head, method, drop=fault is Fault.DROP_RESPONSE, client_close=client_close
        )

    def _forward(self, head: _Head, method: str, *, drop: bool, client_close: bool) -> bool:
        """Send one request upstream and relay (or drop) its answer; False ends the connection."""
        try:
            upstream, upstream_reader = self._connect_upstream()
            upstream.sendall(head.raw)
        except OSError:
            # Nothing was sent: the server is down or gone.
            self._close_upstream()
            self._answer_bad_gateway()
            return False
        self._proxy._count("forwarded")
        pump = _BodyPump(head, self._client_reader, upstream) if _has_request_body(head) else None
        self._pump = pump
        sent_anything = False
        try:
            while True:
                response = _read_head(upstream_reader)
                if response is None:
                    raise _ClosedError("upstream closed before answering")
                status = int(response.start[1]) if len(response.start) > 1 else 0
                if 100 <= status < 200 and status != 101:
                    # Interim answers (100 Continue) go through even on a dropped response:
                    # they tell the client to send the body the server then commits.
                    self._client.sendall(response.raw)
                    sent_anything = True
                    continue
                break
            framed = _response_is_framed(response, method, status)
            if drop:
                self._copy_response_body(response, method, status, lambda _data: None)
                if pump is not None:
                    pump.done(timeout=_DRAIN_SECONDS)
                self._stop_pump()
                _reset(self._client)
                self._close_upstream()
                return False
            upstream_close = (
                not framed
                or "close" in response.tokens("connection")
                or (
                    response.start[0].upper() == "HTTP/1.0"
                    and "keep-alive" not in response.tokens("connection")
                )
            )
            relayed = response.raw
            if upstream_close and framed and not client_close:
                # Connection is hop-by-hop: the client keeps its connection even when the
                # upstream closes its own after each answer (werkzeug, hence moto, always does).
                relayed = response.without("connection")
            self._client.sendall(relayed)
            sent_anything = True
            self._copy_response_body(response, method, status, self._client.sendall)
        except (OSError, _ClosedError, ValueError):
            client_broke_off = pump is not None and pump.error is not None
            self._stop_pump()
            if sent_anything or client_broke_off:
                # Mid-answer there is no way to tell the client but to cut the connection;
                # a client that broke off its own body has nobody left to answer.
                _reset(self._client)
            else:
                self._answer_bad_gateway()
            self._close_upstream()
            return False

        # An upstream that answered before reading the whole body leaves the client's
        # connection in an unknown state (it may still send the rest): end it after the answer.
        body_complete = pump is None or (pump.done(timeout=0.05) and pump.error is None)
        if upstream_close or not body_complete:
            self._close_upstream()
        if not body_complete:
            # FIN after the answer; let the client send the rest of its body or hang up,
            # then stop listening.
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_WR)
            if pump is not None:
                pump.done(timeout=_DRAIN_SECONDS)
            self._stop_pump()
            return False
        self._pump = None
        if not framed or client_close:
            _close_gracefully(self._client)
            return False
        return True

    def _copy_response_body(
        self, response: _Head, method: str, status: int, send: Callable[[bytes], object]
    ) -> None:
        assert self._upstream_reader is not None
        if method == "HEAD" or status in (204, 304):
            return
        if _response_is_framed(response, method, status):
            _copy_body(response, self._upstream_reader, send)
            return
        for data in self._upstream_reader.read_until_eof():
            send(data)

    def _answer_bad_gateway(self) -> None:
        body = b"faultproxy: the upstream server did not answer\n"
        head = (
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            self._client.sendall(head + body)
        _close_gracefully(self._client)


class FaultProxy:
    """A seeded fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of one S3 server.

    Args:
        upstream: Base URL of the real server, ``http://host:port``.
        seed: Seed of the random generator that draws the faults.
        rates: Fault probabilities per eligible request; no faults by default.
        delay_seconds: How long a ``delay`` fault waits before forwarding.
        match: Which requests are eligible for faults (see :func:`match_requests`); all when
            None. Ineligible requests are forwarded untouched and draw no random number.
        port: Port to listen on; 0 picks a free one.
        timeout: Socket timeout in seconds for upstream connections.
    """

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rates: FaultRates | None = None,
        delay_seconds: float = 0.2,
        match: Matcher | None = None,
        port: int = 0,
        timeout: float = 120.0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self._upstream_addr = (parts.hostname, parts.port or 80)
        self.delay_seconds = delay_seconds
        self._timeout = timeout
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rates = rates or FaultRates()
        self._match = match
        self._forced: deque[Fault | None] = deque()
        self._counts = dict.fromkeys((f.name for f in fields(FaultStats)), 0)
        self._decisions: list[Decision] = []
        self._request_ids = itertools.count(1)
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """The URL to give boto3 as ``endpoint_url``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Start accepting connections (idempotent).

        Returns:
            The proxy itself.
        """
        if self._accept_thread is None:
            self._accept_thread = threading.Thread(
                target=self._accept_loop, name="faultproxy-accept", daemon=True
            )
            self._accept_thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, tear down every open connection and wait for the threads."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- control ---------------------------------------------------------------------------

    def set_rates(self, rates: FaultRates | None = None, **kinds: float) -> None:
        """Change the fault rates at runtime (``set_rates()`` turns faults off).

        Args:
            rates: The new rates; keyword arguments (``slowdown=0.1``) build them instead.
            **kinds: Rates per :class:`Fault` value, when ``rates`` is None.
        """
        new = rates if rates is not None else FaultRates(**kinds)
        with self._lock:
            self._rates = new

    def set_match(self, match: Matcher | None) -> None:
        """Change which requests are eligible for faults (None: all).

        Args:
            match: The new matcher.
        """
        with self._lock:
            self._match = match

    def force(self, fault: Fault | str | None, count: int = 1) -> None:
        """Give the next ``count`` eligible requests ``fault``, whatever the rates say.

        Forced decisions are queued after those already forced and draw no random number.
        ``None`` forces requests through untouched.

        Args:
            fault: The fault kind, or None for no fault.
            count: How many requests.
        """
        kind = None if fault is None else Fault(fault)
        with self._lock:
            self._forced.extend([kind] * count)

    @property
    def stats(self) -> FaultStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return FaultStats(**self._counts)

    @property
    def decisions(self) -> list[Decision]:
        """Every request seen so far, in arrival order, with the fault it got."""
        with self._lock:
            return list(self._decisions)

    def reset_stats(self) -> None:
        """Zero the counters and forget the decisions (the random sequence carries on)."""
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)
            self._decisions.clear()

    # -- internals -------------------------------------------------------------------------

    def _decide(self, method: str, target: str) -> Fault | None:
        with self._lock:
            fault: Fault | None = None
            if self._match is None or self._match(method, target):
                if self._forced:
                    fault = self._forced.popleft()
                else:
                    draw = self._rng.random()
                    edge = 0.0
                    for kind in Fault:
                        edge += getattr(self._rates, kind.value)
                        if draw < edge:
                            fault = kind
                            break
            self._counts["requests"] += 1
            if fault is not None:
                self._counts[fault.value] += 1
            self._decisions.append(Decision(method, target, fault))
            return fault

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _request_id(self) -> str:
        with self._lock:
            return f"FAULTPROXY{next(self._request_ids):08d}"

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._count("connections")
            self._track(client)
            thread = threading.Thread(
                target=self._serve, args=(client,), name="faultproxy-conn", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        try:
            _Connection(self, client).serve()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
