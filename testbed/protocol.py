"""The request/response protocol between the mobile user and every service.

Standard library only: the same file is copied into each service image.

A frame on the TCP stream is::

    b"MEC1" | header length (uint32, big endian) | payload length (uint32, big endian)
    | header (UTF-8 JSON object) | payload (raw bytes)

Requests carry ``{"id": int, "op": "task" | "enroll" | "state", "client": str, ...}``
and the task in the payload (image bytes, or a few bytes for the counter).
Replies carry ``{"id", "ok", "service", "counter", "proc_ms", "result" | "error"}``
and an empty payload.  ``proc_ms`` is the service's own processing time, so the
client can split its end-to-end delay into processing and transmission.

A request whose ``id`` equals the last one served for the same ``client`` is
answered from a cache without being processed again (``"replayed": true``),
and one with a lower ``id`` is refused (error ``stale``): a client may always
retry after a timeout, even in parallel, without a task being counted twice.
Ids of one client must increase.
"""

from __future__ import annotations

import json
import socket
import struct

MAGIC = b"MEC1"
PREFIX = struct.Struct("!4sII")
MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 16 * 1024 * 1024
DEFAULT_PORT = 7000

# Error codes a reply may carry.  "Fatal" ones mean the stream cannot be trusted
# any more (we cannot find the next frame), so the server closes the connection.
FATAL_ERRORS = {"bad_magic", "too_large", "bad_header"}


class ProtocolError(Exception):
    """A frame that breaks the protocol; ``code`` is one of the reply error codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ConnectionClosed(Exception):
    """The peer closed the stream; ``partial`` tells whether mid-frame."""

    def __init__(self, partial: bool):
        super().__init__("connection closed" + (" mid-frame" if partial else ""))
        self.partial = partial


def encode(header: dict, payload: bytes = b"") -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode()
    if len(body) > MAX_HEADER:
        raise ProtocolError("too_large", f"header of {len(body)} bytes exceeds {MAX_HEADER}")
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return PREFIX.pack(MAGIC, len(body), len(payload)) + body + payload


def _read_exact(sock: socket.socket, size: int, started: bool) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionClosed(partial=started or bool(chunks))
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket, max_payload: int = MAX_PAYLOAD) -> tuple[dict, bytes]:
    """Read one frame; raise ProtocolError for a malformed one, ConnectionClosed at EOF."""
    magic, header_len, payload_len = PREFIX.unpack(_read_exact(sock, PREFIX.size, False))
    if magic != MAGIC:
        raise ProtocolError("bad_magic", f"frame starts with {magic!r}, expected {MAGIC!r}")
    if header_len > MAX_HEADER:
        raise ProtocolError("bad_header", f"header length {header_len} exceeds {MAX_HEADER}")
    if payload_len > max_payload:
        raise ProtocolError("too_large", f"payload length {payload_len} exceeds {max_payload}")
    raw = _read_exact(sock, header_len, True)
    payload = _read_exact(sock, payload_len, True) if payload_len else b""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_request", f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_request", "header is not a JSON object")
    return header, payload


def check_request(header: dict) -> None:
    """Validate the fields every request needs; raise ProtocolError naming the field."""
    rid = header.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
        raise ProtocolError("bad_request", f"field 'id' must be a non-negative integer, got {rid!r}")
    op = header.get("op")
    if not isinstance(op, str):
        raise ProtocolError("bad_request", f"field 'op' must be a string, got {op!r}")
    client = header.get("client", "")
    if not isinstance(client, str) or len(client) > 128:
        raise ProtocolError("bad_request", "field 'client' must be a string of at most 128 characters")


def error_reply(rid, service: str, counter: int, code: str, message: str) -> dict:
    return {"id": rid, "ok": False, "service": service, "counter": counter, "proc_ms": 0.0,
            "error": {"code": code, "message": message[:500]}}
