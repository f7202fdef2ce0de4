"""Client side of the service protocol: one request, one reply, with timeouts.

The connection to an endpoint is kept open between requests (no handshake
per task) and dropped on any error; the next request reconnects.  Retrying a
request with the same id is safe: the service replays its cached reply.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from testbed import protocol


class RequestFailed(Exception):
    """No valid reply: refused, reset, timed out, or an error reply."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass
class Reply:
    header: dict
    sent: float       # wall-clock seconds
    received: float

    @property
    def e2e_ms(self) -> float:
        return (self.received - self.sent) * 1e3

    @property
    def counter(self) -> int:
        return self.header["counter"]

    @property
    def proc_ms(self) -> float:
        return float(self.header.get("proc_ms", 0.0))


class ServiceClient:
    def __init__(self, client_id: str, timeout: float = 5.0, connect_timeout: float | None = None):
        self.client_id = client_id
        self.timeout = timeout
        self.connect_timeout = connect_timeout or timeout
        self._sock: socket.socket | None = None
        self._endpoint: tuple[str, int] | None = None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._endpoint = None

    def _connect(self, endpoint: tuple[str, int], deadline: float) -> socket.socket:
        if self._sock is not None and self._endpoint == endpoint:
            return self._sock
        self.close()
        try:
            sock = socket.create_connection(endpoint, timeout=max(0.001, min(self.connect_timeout,
                                                                             deadline - time.monotonic())))
        except socket.timeout as exc:
            raise RequestFailed("timeout", f"connect to {endpoint[0]}:{endpoint[1]}") from exc
        except OSError as exc:
            raise RequestFailed("unreachable", f"connect to {endpoint[0]}:{endpoint[1]}: {exc.strerror}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._endpoint = sock, endpoint
        return sock

    def request(self, endpoint: tuple[str, int], rid: int, op: str = "task", payload: bytes = b"",
                extra: dict | None = None, timeout: float | None = None) -> Reply:
        """Send one request and wait for its reply; raise RequestFailed otherwise."""
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        header = {"id": rid, "op": op, "client": self.client_id, **(extra or {})}
        frame = protocol.encode(header, payload)
        sent = time.time()
        sock = self._connect(endpoint, deadline)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(frame)
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                reply, _ = protocol.read_frame(sock)
                if reply.get("id") == rid:
                    break  # anything else is a stale reply to an earlier, abandoned request
        except socket.timeout as exc:
            self.close()
            raise RequestFailed("timeout", f"no reply within {limit:.2f} s") from exc
        except (OSError, protocol.ConnectionClosed, protocol.ProtocolError) as exc:
            self.close()
            raise RequestFailed("connection", str(exc)) from exc
        received = time.time()
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise RequestFailed("error", f"{error.get('code')}: {error.get('message')}")
        return Reply(reply, sent, received)
