"""The offloading client of the mobile user: continuous tasks, every one logged.

While the service answers, tasks go one after another on a kept-open
connection.  When a task fails (reset, timeout, link down, error reply) the
client enters recovery: every ``probe_interval`` (10 ms) it starts a fresh
attempt of the *same* task at every candidate endpoint (the current one and
any the controller announced as pending), in parallel, without waiting for
older attempts to time out.  The first attempt that gets a valid reply ends the
outage, and its endpoint becomes the current one.  So an outage is measured to
one probe interval, and since the task id does not change, the service counts
it once (it replays its cached reply to a repeated id).

A task's timeout is measured, per endpoint: 4 times its E2E so far, and on a
new connection 4 times what tasks on a new connection took there (a 160 kB
upload slow-starts over the cloud's 300 ms round trip: 1.5-2.4 s, three to
four times a task on a warm connection).  Each generation of attempts that times out
doubles it, as TCP backs off its retransmission timer, until an answer comes:
a timeout too short for the path can delay recovery once, never forever.

Probes are cheap (a connection attempt), uploads are not: an image task is
~160 kB, a few tens of ms on the radio link.  So at most one copy of the task
is on its way up to an endpoint at a time (one that stalls, with no byte
acknowledged for ``STALLED_UPLOAD_S`` beyond two of its round trips, no longer
counts: in slow start acknowledgements come once a round trip, 300 ms to the
cloud), and copies no longer needed are reset, not drained.  Otherwise every
probe would upload its copy at once, all would share the link, and none would
finish before its timeout: the outage would never end (congestion collapse).

Every attempt is one line of the request log::

    {"user", "service", "app", "id", "endpoint", "ap", "sent", "received", "ok",
     "e2e_ms", "proc_ms", "tx_ms", "counter", "error", "recovery"}
"""

from __future__ import annotations

import errno
import fcntl
import json
import selectors
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed import protocol
from testbed.deprecation import renamed
from testbed.rpc import close_connection

STALLED_UPLOAD_S = 0.1      # beyond two round trips of the attempt's connection
MAX_BACKOFF = 6          # doublings of a timeout: 64 times it, past any max_timeout
UNMEASURED_TIMEOUT_S = 4.0   # an endpoint with no answer yet: longer than a first task on a new
                             # connection to the cloud (1.5-2.4 s), so a trial does not start on an outage


@dataclass
class Workload:
    """What the user offloads: an op and the payloads it cycles through."""

    payloads: list[bytes]
    op: str = "task"
    think_time: float = 0.0   # seconds between a reply and the next task
    extra: dict = field(default_factory=dict)

    def payload(self, rid: int) -> bytes:
        return self.payloads[rid % len(self.payloads)]


class _Attempt:
    """One non-blocking try of a task at one endpoint."""

    def __init__(self, endpoint: tuple[str, int], frame: bytes, started: float, deadline: float,
                 backoff: int = 0):
        self.endpoint = endpoint
        self.frame = frame
        self.started = started      # wall clock, for the log
        self.deadline = deadline    # monotonic
        self.backoff = backoff      # doublings of the endpoint's timeout it was given
        self.buffer = bytearray()
        self.sent = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected = False
        self.remaining = len(frame)  # bytes of the frame not yet acknowledged by the service
        self.progressed = 0.0        # monotonic time ``remaining`` last went down
        self.rtt = 0.0               # the connection's round trip (TCP's estimate once connected)
        code = self.sock.connect_ex(endpoint)
        self.error = None
        if code not in (0, errno.EINPROGRESS):
            self.error = f"connect: {errno.errorcode.get(code, code)}"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with a reset: what is still queued to send is dropped, not sent."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def uploading(self, now: float) -> bool:
        """Its frame is going up to the service (sent or queued, not yet acknowledged)
        and still moving."""
        if not self.connected:
            return False
        remaining = len(self.frame) - self.sent + _unacknowledged(self.sock)
        if remaining < self.remaining:
            self.remaining, self.progressed = remaining, now
        return remaining > 0 and now - self.progressed < STALLED_UPLOAD_S + 2 * self.rtt

    def reply(self) -> dict | None:
        """The reply header once a whole frame has arrived."""
        if len(self.buffer) < protocol.PREFIX.size:
            return None
        magic, hlen, plen = protocol.PREFIX.unpack_from(self.buffer)
        if magic != protocol.MAGIC:
            raise protocol.ProtocolError("bad_magic", "reply is not a protocol frame")
        end = protocol.PREFIX.size + hlen + plen
        if len(self.buffer) < end:
            return None
        return json.loads(bytes(self.buffer[protocol.PREFIX.size:protocol.PREFIX.size + hlen]))


def _unacknowledged(sock: socket.socket) -> int:
    """Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ)."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except OSError:
        return 0


TCPI_RTT = struct.Struct("=8B60xI")   # struct tcp_info: 8 one-byte fields, 15 u32 (60 bytes), then tcpi_rtt (us)


def _round_trip(sock: socket.socket) -> float:
    """TCP's smoothed round-trip time of a connected socket, s (TCP_INFO's tcpi_rtt; 0 if unknown)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0.0
    return TCPI_RTT.unpack_from(info)[-1] / 1e6 if len(info) >= TCPI_RTT.size else 0.0


def _average_in(averages: dict, endpoint, e2e: float) -> None:
    """Fold one E2E into an endpoint's moving average (the first one starts it)."""
    held = averages.get(endpoint)
    averages[endpoint] = e2e if held is None else 0.8 * held + 0.2 * e2e


def _discard(selector: selectors.BaseSelector, attempts: list[_Attempt], attempt: _Attempt) -> None:
    selector.unregister(attempt.sock)
    attempt.abort()
    attempts.remove(attempt)


class OffloadingClient(threading.Thread):
    def __init__(self, user: str, service: str, workload: Workload, log_path: Path | None,
                 probe_interval: float = 0.010, min_timeout: float = 0.5, max_timeout: float = 10.0,
                 ap_of=lambda: None, on_reply=None, app: str | None = None):
        super().__init__(name=f"client-{service}", daemon=True)
        self.user = user
        self.service = service
        self.app = app
        self.workload = workload
        self.probe_interval = probe_interval
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout
        self.ap_of = ap_of
        self.on_reply = on_reply
        self._lock = threading.Lock()
        self._current: tuple[str, int] | None = None
        self._pending: list[tuple[str, int]] = []
        self._version = 0        # of the controller's information held; past it once found elsewhere
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._sock: socket.socket | None = None
        self._log = open(log_path, "a", buffering=1) if log_path else None
        self._interrupted_at: float | None = None
        self._interrupt_cause = "radio link down"
        self.rid = 0
        self.e2e_by_endpoint: dict[tuple[str, int], float] = {}     # EWMA of each endpoint's E2E, s
        self.fresh_e2e_by_endpoint: dict[tuple[str, int], float] = {}   # the same, tasks on a new connection
        self._backoff: dict[tuple[str, int], int] = {}   # doublings of an endpoint's timeout since it answered
        self.last_counter: int | None = None
        self.stats = {"ok": 0, "failed": 0}

    # -- control from other threads -------------------------------------------------
    def set_endpoints(self, current=None, pending=None, version: int | None = None) -> None:
        """Where the service is and may be next; ``version`` (the controller's): information older
        than what this client already holds, or older than its own finding, is ignored."""
        with self._lock:
            if version is not None:
                if version < self._version:
                    return
                self._version = version
            if current is not None:
                current = (current[0], int(current[1]))
                if current != self._current:
                    self._current = current
                    self._drop_connection()
            if pending is not None:
                self._pending = [(p[0], int(p[1])) for p in pending]
        self._wake.set()

    def interrupt(self, cause: str = "radio link down") -> None:
        """The radio link went down: abandon the task in flight now (do not wait for a timeout).
        It is logged as failed at this moment, with ``cause``: the outage began with the
        radio, not when the task was sent."""
        self._interrupted_at = time.time()
        self._interrupt_cause = cause
        self._drop_connection()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._drop_connection()

    def endpoints(self) -> dict:
        with self._lock:
            return {"current": self._current, "pending": list(self._pending)}

    # -- internals --------------------------------------------------------------------
    def _drop_connection(self) -> None:
        sock, self._sock = self._sock, None
        close_connection(sock)

    @property
    def ewma_e2e(self) -> float | None:
        """Deprecated: the E2E average is kept per endpoint now (``e2e_by_endpoint``); this is
        the current endpoint's."""
        with self._lock:
            current = self._current
        return renamed("OffloadingClient.ewma_e2e", "OffloadingClient.e2e_by_endpoint[endpoint]",
                       self.e2e_by_endpoint.get(current) if current else None)

    def _timeout(self, endpoint: tuple[str, int], fresh: bool = False) -> float:
        """How long a task at ``endpoint`` may take: 4 times its E2E so far (``fresh``, on a new
        connection: 4 times what tasks on a new connection took there, if longer),
        ``UNMEASURED_TIMEOUT_S`` where none was measured yet; doubled for each generation of
        attempts there that timed out since it last answered.  Per endpoint: after minutes at an
        edge server a service moved to the cloud (300 ms away) must not be given up on for taking
        longer than the edge did."""
        e2e = self.e2e_by_endpoint.get(endpoint)
        if fresh and endpoint in self.fresh_e2e_by_endpoint:
            e2e = max(e2e or 0.0, self.fresh_e2e_by_endpoint[endpoint])
        base = UNMEASURED_TIMEOUT_S if e2e is None else 4 * e2e + 0.2
        return min(self.max_timeout, max(self.min_timeout, base) * 2 ** self._backoff.get(endpoint, 0))

    def _timed_out(self, endpoint: tuple[str, int], backoff: int) -> None:
        """An attempt given ``backoff`` doublings timed out: the next ones get one more (at most
        as many as reach ``max_timeout``; attempts started before this one learnt nothing new)."""
        self._backoff[endpoint] = min(max(self._backoff.get(endpoint, 0), backoff + 1), MAX_BACKOFF)

    def _record(self, **fields) -> None:
        record = {"user": self.user, "service": self.service, "app": self.app, "ap": self.ap_of(), **fields}
        if self._log:
            self._log.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _frame(self) -> bytes:
        header = {"id": self.rid, "op": self.workload.op, "client": self.user, **self.workload.extra}
        return protocol.encode(header, self.workload.payload(self.rid))

    def _success(self, endpoint, started: float, received: float, header: dict, recovery: bool,
                 fresh: bool) -> None:
        self._interrupted_at = None          # a radio outage that came and went between two requests
        e2e = received - started
        _average_in(self.e2e_by_endpoint, endpoint, e2e)
        if fresh:
            _average_in(self.fresh_e2e_by_endpoint, endpoint, e2e)
        self._backoff.pop(endpoint, None)
        proc_ms = float(header.get("proc_ms", 0.0))
        counter = header.get("counter")
        self._record(id=self.rid, endpoint=list(endpoint), sent=started, received=received, ok=True,
                     e2e_ms=round(e2e * 1e3, 3), proc_ms=proc_ms, tx_ms=round(e2e * 1e3 - proc_ms, 3),
                     counter=counter, replayed=bool(header.get("replayed")), recovery=recovery,
                     result=header.get("result"))
        self.stats["ok"] += 1
        self.last_counter = counter
        if self.on_reply:
            self.on_reply(e2e * 1e3, header)
        self.rid += 1

    def _failure(self, endpoint, started: float, error: str, recovery: bool, failed_at: float | None = None) -> None:
        self.stats["failed"] += 1
        self._record(id=self.rid, endpoint=list(endpoint) if endpoint else None, sent=started,
                     received=failed_at or time.time(), ok=False, error=error, recovery=recovery)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                current = self._current
            if current is None:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            if not self._steady(current):
                self._recover()
            elif self.workload.think_time:
                self._stopping.wait(self.workload.think_time)
        self._drop_connection()
        if self._log:
            self._log.close()

    def _steady(self, endpoint) -> bool:
        """One task on the kept-open connection; False if it failed."""
        started = time.time()
        fresh, backoff = self._sock is None, self._backoff.get(endpoint, 0)
        limit = self._timeout(endpoint, fresh)
        deadline = time.monotonic() + limit
        try:
            if fresh:
                sock = socket.create_connection(endpoint, timeout=limit)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sock = sock
            sock = self._sock
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(self._frame())
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                header, _ = protocol.read_frame(sock)
                if header.get("id") == self.rid:
                    break
        except (OSError, AttributeError, protocol.ConnectionClosed, protocol.ProtocolError) as exc:
            self._drop_connection()
            if self._stopping.is_set():
                return True  # we hung up ourselves: not an outage
            interrupted, self._interrupted_at = self._interrupted_at, None
            if interrupted is not None:
                # under this request, or while none was in flight: the outage began with the radio
                self._failure(endpoint, started, f"interrupted: {self._interrupt_cause}", recovery=False,
                              failed_at=interrupted if interrupted >= started else None)
                return False
            kind = "timeout" if isinstance(exc, socket.timeout) else type(exc).__name__
            if isinstance(exc, socket.timeout):
                self._timed_out(endpoint, backoff)
            self._failure(endpoint, started, f"{kind}: {exc}", recovery=False)
            return False
        received = time.time()
        if not header.get("ok"):
            error = header.get("error") or {}
            self._failure(endpoint, started, f"error: {error.get('code')}: {error.get('message')}", False)
            return True  # the service answered: not an outage
        self._success(endpoint, started, received, header, recovery=False, fresh=fresh)
        return True

    def _recover(self) -> None:
        selector = selectors.DefaultSelector()
        attempts: list[_Attempt] = []
        next_round = time.monotonic()
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= next_round:
                    with self._lock:
                        candidates = [self._current] + [p for p in self._pending if p != self._current]
                    for endpoint in candidates:
                        if endpoint is None or self._upload_under_way(attempts, endpoint, now):
                            continue
                        attempt = _Attempt(endpoint, self._frame(), time.time(),
                                           now + self._timeout(endpoint, fresh=True),
                                           self._backoff.get(endpoint, 0))
                        if attempt.error:
                            self._failure(endpoint, attempt.started, attempt.error, recovery=True)
                            attempt.close()
                            continue
                        attempts.append(attempt)
                        selector.register(attempt.sock, selectors.EVENT_WRITE, attempt)
                    next_round = now + self.probe_interval
                for key, events in selector.select(max(0.0, next_round - time.monotonic())):
                    attempt: _Attempt = key.data
                    if not attempt.connected and self._upload_under_way(attempts, attempt.endpoint,
                                                                        time.monotonic(), besides=attempt):
                        _discard(selector, attempts, attempt)   # a copy is already on its way there
                        continue
                    done = self._advance(selector, attempt, events)
                    if done == "won":
                        with self._lock:
                            if attempt.endpoint != self._current:
                                # found where the controller said it may be: what it said before
                                # this move (a reply still on its way) no longer holds
                                self._version += 1
                            self._current = attempt.endpoint
                            self._pending = [p for p in self._pending if p != attempt.endpoint]
                        selector.unregister(attempt.sock)
                        attempt.sock.setblocking(True)
                        self._sock = attempt.sock
                        attempts.remove(attempt)
                        return
                    if done == "failed":
                        attempts.remove(attempt)
                now = time.monotonic()
                for attempt in [a for a in attempts if a.deadline <= now]:
                    self._timed_out(attempt.endpoint, attempt.backoff)
                    self._failure(attempt.endpoint, attempt.started, "timeout", recovery=True)
                    _discard(selector, attempts, attempt)
        finally:
            for attempt in attempts:
                attempt.abort()
            selector.close()

    @staticmethod
    def _upload_under_way(attempts: list[_Attempt], endpoint, now: float, besides: _Attempt | None = None) -> bool:
        return any(a is not besides and a.endpoint == endpoint and a.uploading(now) for a in attempts)

    def _advance(self, selector, attempt: _Attempt, events) -> str | None:
        sock = attempt.sock
        try:
            if not attempt.connected:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, errno.errorcode.get(code, str(code)))
                attempt.connected = True
                attempt.progressed = time.monotonic()
                attempt.rtt = _round_trip(sock)
                selector.modify(sock, selectors.EVENT_WRITE | selectors.EVENT_READ, attempt)
            if events & selectors.EVENT_WRITE and attempt.sent < len(attempt.frame):
                attempt.sent += sock.send(attempt.frame[attempt.sent:])
                if attempt.sent >= len(attempt.frame):
                    selector.modify(sock, selectors.EVENT_READ, attempt)
            if events & selectors.EVENT_READ:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed by the service")
                attempt.buffer += chunk
                header = attempt.reply()
                if header is not None and header.get("id") == self.rid:
                    if not header.get("ok"):
                        error = header.get("error") or {}
                        raise RuntimeError(f"error: {error.get('code')}: {error.get('message')}")
                    self._success(attempt.endpoint, attempt.started, time.time(), header, recovery=True, fresh=True)
                    return "won"
                if header is not None:  # a stale reply: drop that frame and keep reading
                    _, hlen, plen = protocol.PREFIX.unpack_from(attempt.buffer)
                    del attempt.buffer[:protocol.PREFIX.size + hlen + plen]
        except (OSError, RuntimeError, ValueError, struct.error, protocol.ProtocolError) as exc:
            selector.unregister(sock)
            attempt.close()
            self._failure(attempt.endpoint, attempt.started, f"{type(exc).__name__}: {exc}", recovery=True)
            return "failed"
        return None
