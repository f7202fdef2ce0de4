"""JSON-lines RPC over TCP between controller, agents and the mobile user.

Orders and reports cross the emulated network like any traffic, so an order
from the cloud to an edge really takes the 150 ms of that link.  Connections
are persistent (no handshake per call) and multiplexed: each call carries an
id, each request is served in its own thread, so a slow order (a migration)
does not hold up a quick one (a report) on the same connection.

A server offers an explicit list of its target's methods; a call of anything
else, a malformed or oversized request is answered with an error (and logged
when the server has an event log), and the connection keeps serving.

    server = RpcServer(("10.255.0.2", 7100), handler_object, ("ping", "deploy"))
    client = RpcClient(("10.255.0.2", 7100)); client.call("ping")
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import socketserver
import threading
import traceback


def close_connection(sock: socket.socket | None) -> None:
    """Shut a connection down both ways, then close it (None: nothing to do).  The shutdown
    wakes a thread blocked reading it, which a bare close would leave waiting."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class RpcError(Exception):
    """The remote method raised, or the call could not be delivered."""

    def __init__(self, message: str, kind: str = "remote"):
        super().__init__(message)
        self.kind = kind


def _send(sock: socket.socket, lock: threading.Lock, message: dict) -> None:
    data = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
    with lock:
        sock.sendall(data)


MAX_REQUEST = 16 * 1024 * 1024     # bytes of one request line


class _Connection(socketserver.StreamRequestHandler):
    target: object
    methods: frozenset[str]
    events = None

    def handle(self):
        if self.connection.family != socket.AF_UNIX:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lock = threading.Lock()
        while True:
            try:
                line = self.rfile.readline(MAX_REQUEST + 1)
            except OSError:
                return
            if not line:
                return
            if len(line) > MAX_REQUEST:
                self._refuse(None, f"request longer than {MAX_REQUEST} bytes", lock)
                return                     # the stream cannot be trusted any more
            try:
                message = json.loads(line)
                rid, method, params = message["id"], message["method"], message.get("params", {})
                if not isinstance(method, str) or not isinstance(params, dict):
                    raise TypeError("method must be a string and params an object")
            except (ValueError, KeyError, TypeError) as exc:
                self._refuse(None, f"malformed request: {type(exc).__name__}: {exc}", lock)
                continue
            if method not in self.methods:
                self._refuse(rid, f"unknown method {method!r}: not offered remotely", lock)
                continue
            threading.Thread(target=self._serve, args=(rid, method, params, lock), daemon=True).start()


    def _refuse(self, rid, error: str, lock) -> None:
        if self.events is not None:
            self.events.emit("rpc.refused", error=error[:300])
        try:
            _send(self.connection, lock, {"id": rid, "error": error})
        except OSError:
            pass

    def _serve(self, rid, method, params, lock):
        try:
            reply = {"id": rid, "result": getattr(self.target, method)(**params)}
        except Exception as exc:  # the caller gets the error; the server keeps serving
            reply = {"id": rid, "error": f"{type(exc).__name__}: {exc}",
                     "trace": traceback.format_exc(limit=5)}
            if rid is None and self.events is not None:     # a notice has no caller to tell
                self.events.emit("rpc.failed", method=method, error=reply["error"][:300])
        if rid is None:
            return
        try:
            _send(self.connection, lock, reply)
        except OSError:
            pass


class _ServeInThread:
    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        return thread


class _TcpServer(_ServeInThread, socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _UnixServer(_ServeInThread, socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def RpcServer(address: tuple[str, int] | str, target: object, methods, events=None):  # noqa: N802
    """Serve ``methods`` of ``target`` (and nothing else) on a TCP (host, port) or a
    Unix socket path; refused and malformed requests go to ``events`` (an EventLog)."""
    missing = [m for m in methods if not callable(getattr(target, m, None))]
    if missing:
        raise TypeError(f"{type(target).__name__} has no method {', '.join(missing)}")
    handler = type("BoundConnection", (_Connection,), {"target": target, "methods": frozenset(methods),
                                                       "events": events})
    if isinstance(address, str):
        if os.path.exists(address):
            os.unlink(address)
        return _UnixServer(address, handler)
    return _TcpServer(tuple(address), handler)


class RpcClient:
    """Calls on a persistent connection; reconnects after a failure."""

    def __init__(self, address: tuple[str, int] | str, timeout: float = 60.0, connect_timeout: float = 5.0):
        self.address = address if isinstance(address, str) else tuple(address)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pending: dict[int, dict] = {}
        self._events: dict[int, threading.Event] = {}

    def _connection(self) -> socket.socket:
        with self._lock:
            if self._sock is None:
                if isinstance(self.address, str):
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(self.connect_timeout)
                    sock.connect(self.address)
                else:
                    sock = socket.create_connection(self.address, timeout=self.connect_timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(None)
                self._sock = sock
                threading.Thread(target=self._reader, args=(sock,), daemon=True).start()
            return self._sock

    def _reader(self, sock: socket.socket) -> None:
        try:
            for line in sock.makefile("rb"):
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                rid = message.get("id")
                with self._lock:
                    if rid in self._events:
                        self._pending[rid] = message
                        self._events[rid].set()
        except OSError:
            pass
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
                for rid, event in self._events.items():
                    self._pending.setdefault(rid, {"id": rid, "error": "connection lost", "lost": True})
                    event.set()

    def call(self, method: str, timeout: float | None = None, **params):
        rid = next(self._ids)
        event = threading.Event()
        with self._lock:
            self._events[rid] = event
        try:
            try:
                sock = self._connection()
                _send(sock, self._send_lock, {"id": rid, "method": method, "params": params})
            except OSError as exc:
                self.close()
                raise RpcError(f"{method} to {self.address}: {exc}", "unreachable") from exc
            if not event.wait(timeout or self.timeout):
                raise RpcError(f"{method} to {self.address}: no answer in {timeout or self.timeout} s",
                               "timeout")
            with self._lock:
                reply = self._pending.pop(rid)
        finally:
            with self._lock:
                self._events.pop(rid, None)
                self._pending.pop(rid, None)
        if "error" in reply:
            raise RpcError(f"{method}: {reply['error']}", "lost" if reply.get("lost") else "remote")
        return reply["result"]

    def notify(self, method: str, **params) -> None:
        """Send a call without waiting for (or getting) an answer: a notice that must leave
        before the sender's link goes down.  Raises RpcError if it could not be sent."""
        try:
            _send(self._connection(), self._send_lock, {"id": None, "method": method, "params": params})
        except OSError as exc:
            self.close()
            raise RpcError(f"{method} to {self.address}: {exc}", "unreachable") from exc

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        close_connection(sock)
