"""The server loop every service container runs (standard library only).

A service is a subclass of ``Service`` that loads its model once and turns one
request into a result.  The loop owns everything else: framing, malformed
input, the stateful counter of seed 002 (incremented once per served request,
returned in every reply), replay of a retried request, and timing.

State lives in this one process, in memory, so a CRIU checkpoint of the
container carries it (counter, replay cache, and whatever the service keeps,
e.g. enrolled faces).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import io
import os
import signal
import socket
import socketserver
import sys
import threading
import time

import protocol

IDLE_TIMEOUT_S = 120.0
REPLAY_CLIENTS = 1024
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3       # glibc's mallopt parameters


class RequestError(Exception):
    """The request is well framed but cannot be served (e.g. not an image)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Service:
    """Override ``name``, ``load`` and ``handle``; add ops by extending ``handle``."""

    name = "service"
    max_payload = protocol.MAX_PAYLOAD

    def load(self) -> None:
        """Load models into memory (called once, before serving)."""

    def handle(self, op: str, header: dict, payload: bytes) -> dict:
        raise RequestError("unknown_op", f"unknown op {op!r}")

    def snapshot(self) -> dict:
        """Service-specific state reported by the 'state' op."""
        return {}

    # Helpers for image services ------------------------------------------
    @staticmethod
    def decode_image(payload: bytes):
        """JPEG/PNG bytes -> RGB numpy array, or RequestError('bad_image')."""
        if not payload:
            raise RequestError("bad_image", "empty payload: expected JPEG or PNG bytes")
        from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 (image services only)
        import numpy as np  # noqa: PLC0415

        try:
            with Image.open(io.BytesIO(payload)) as image:
                image.load()
                if image.width * image.height > 40_000_000:
                    raise RequestError("bad_image", f"image of {image.width}x{image.height} is too large")
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise RequestError("bad_image", f"not a readable image: {exc}") from None
        except Image.DecompressionBombError as exc:
            raise RequestError("bad_image", str(exc)) from None


class State:
    """The counter and the replay cache, shared by all connections."""

    def __init__(self, service: Service):
        self.service = service
        self.counter = 0
        self.lock = threading.Lock()
        self.last = collections.OrderedDict()  # client -> (request id, reply)

    def serve(self, header: dict, payload: bytes) -> dict:
        protocol.check_request(header)
        rid, op, client = header["id"], header["op"], header.get("client", "")
        with self.lock:
            cached = self.last.get(client)
            if cached is not None and cached[0] == rid:
                return dict(cached[1], replayed=True)
            if cached is not None and rid < cached[0]:
                # A late copy of a retried request (the client has moved on): never count it.
                return protocol.error_reply(rid, self.service.name, self.counter, "stale",
                                            f"request {rid} is older than {cached[0]}, already served")
            if op == "state":
                return {"id": rid, "ok": True, "service": self.service.name,
                        "counter": self.counter, "proc_ms": 0.0,
                        "result": {"pid": os.getpid(), **self.service.snapshot()}}
            started = time.perf_counter()
            try:
                result = self.service.handle(op, header, payload)
            except RequestError as exc:
                return protocol.error_reply(rid, self.service.name, self.counter, exc.code, exc.message)
            except Exception as exc:  # a bug in a model must not kill the service
                return protocol.error_reply(rid, self.service.name, self.counter, "internal",
                                            f"{type(exc).__name__}: {exc}")
            proc_ms = (time.perf_counter() - started) * 1e3
            self.counter += 1
            reply = {"id": rid, "ok": True, "service": self.service.name, "counter": self.counter,
                     "proc_ms": round(proc_ms, 3), "result": result}
            self.last[client] = (rid, reply)
            self.last.move_to_end(client)
            while len(self.last) > REPLAY_CLIENTS:
                self.last.popitem(last=False)
            return reply


class Handler(socketserver.BaseRequestHandler):
    state: State

    def handle(self):
        sock = self.request
        sock.settimeout(IDLE_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        service = self.state.service
        while True:
            try:
                header, payload = protocol.read_frame(sock, service.max_payload)
            except protocol.ConnectionClosed as closed:
                if closed.partial:  # the sender stopped mid-frame: say so before hanging up
                    self._send(protocol.error_reply(None, service.name, self.state.counter, "truncated",
                                                    "the connection closed in the middle of a frame"))
                return
            except protocol.ProtocolError as exc:
                self._send(protocol.error_reply(None, service.name, self.state.counter,
                                                exc.code, exc.message))
                if exc.code in protocol.FATAL_ERRORS:
                    return
                continue
            except (OSError, socket.timeout):
                return
            try:
                reply = self.state.serve(header, payload)
            except protocol.ProtocolError as exc:
                reply = protocol.error_reply(header.get("id") if isinstance(header.get("id"), int)
                                             else None, service.name, self.state.counter,
                                             exc.code, exc.message)
            if not self._send(reply):
                return

    def _send(self, reply: dict) -> bool:
        try:
            self.request.sendall(protocol.encode(reply))
            return True
        except OSError:
            return False


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 64


def return_freed_memory() -> None:
    """Make glibc give freed buffers back to the kernel instead of keeping them.

    A model service allocates and frees megabytes per request (decoded images,
    feature maps).  glibc keeps such freed blocks mapped and dirty by default,
    so every checkpoint carries the garbage of the last requests, and it
    differs from one checkpoint to the next: it was 95 % of the ALPR service's
    pre-copy delta.  Blocks of 64 kB and more get their own mapping
    (unmapped on free) and free memory at a heap's top is trimmed past 128 kB,
    as memory-conscious servers configure it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    for parameter, value in ((M_MMAP_THRESHOLD, 64 * 1024), (M_TRIM_THRESHOLD, 128 * 1024)):
        if not libc.mallopt(parameter, value):
            print(f"mallopt({parameter}, {value}) refused: freed memory stays in checkpoints", flush=True)


def sleeping_thread_pools(options):
    """onnxruntime ``SessionOptions`` whose idle threads sleep at once instead of spinning for
    the next task: a spinning pool looks busy between two requests, so a migration's quiesce
    would never find the service idle while its user is still sending, and would checkpoint
    it mid-inference.  Returns ``options``."""
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def serve(service: Service, port: int | None = None) -> None:
    port = port or int(os.environ.get("MEC_PORT", protocol.DEFAULT_PORT))
    return_freed_memory()
    service.load()
    state = State(service)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = Server(("0.0.0.0", port), handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{service.name}: serving on port {port} (pid {os.getpid()})", flush=True)
    server.serve_forever(poll_interval=0.5)
