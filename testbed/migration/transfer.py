"""Moving migration state between servers, across the emulated WAN.

* ``DataChannel``/``FileReceiver``: kept-open TCP streams carrying a JSON
  manifest and then the bytes of every file (checkpoints, deltas, instance
  layers) from the source agent to the destination agent, optionally with the
  order to act on them on arrival (restore).
* deltas between checkpoints are made by ``testbed.migration.delta`` and
  shipped with ``DataChannel.push`` as one file: no round trips while the service is down.
* ``rsync_push``: plain rsync to the destination's rsync daemon, for seed 001's
  application layer (incremental file sync: nothing is sent when the layer is
  already there).

Nothing is ever copied through the host's filesystem from one server's
directory to another's: every byte crosses the links between the two servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
import time
from pathlib import Path

_LEN = struct.Struct("!I")
SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)    # Linux; 47 on every architecture but a few
UNPACED = 2**64 - 1
CHUNK = 1 << 20


class TransferError(RuntimeError):
    pass


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        chunk = sock.recv(min(size, CHUNK))
        if not chunk:
            raise TransferError("sender closed the stream early")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


class DataChannel:
    """Kept-open TCP connections from one server's agent to another's receiver.

    A push carries a manifest and the files; it may also carry ``then``: an
    order the receiver executes as soon as the files are in place (e.g.
    restore), so state and order cross the WAN together.  Idle connections are
    reused (no handshake per transfer); parallel pushes get their own.
    """

    STALL_S = 30.0      # no byte accepted for this long while sending: the path is gone

    def __init__(self, address: tuple[str, int], timeout: float = 120.0):
        """``timeout``: for the receiver's reply once everything is sent (it may restore first)."""
        self.address = tuple(address)
        self.timeout = timeout
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def _take(self) -> tuple[socket.socket, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, False

    def push(self, service: str, slot: str, root: Path, files: list[Path] | None = None,
             then: dict | None = None, clear: bool = True, pace_bytes_per_s: float | None = None) -> dict:
        """Send ``files`` (default: all under ``root``) into the receiver's
        ``incoming/<service>/<slot>/``; return bytes, seconds and the receiver's reply.
        ``pace_bytes_per_s``: the kernel paces this push's packets at that rate (TCP pacing,
        ``SO_MAX_PACING_RATE``), leaving the rest of the path to other traffic."""
        root = Path(root)
        files = files if files is not None else sorted(p for p in root.rglob("*") if p.is_file())
        entries = [{"path": str(Path(f).relative_to(root)), "size": Path(f).stat().st_size} for f in files]
        manifest = json.dumps({"service": service, "slot": slot, "clear": clear, "files": entries,
                               "then": then}).encode()
        total = sum(e["size"] for e in entries)
        for attempt in (1, 2):
            sock, reused = self._take()
            started = time.monotonic()
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE,
                                struct.pack("Q", int(pace_bytes_per_s) if pace_bytes_per_s else UNPACED))
                sock.settimeout(self.STALL_S)        # sendfile waits at most this long for each chunk
                sock.sendall(_LEN.pack(len(manifest)) + manifest)
                for path in files:
                    with open(path, "rb") as handle:
                        sock.sendfile(handle)
                sock.settimeout(self.timeout)
                reply = json.loads(_recv_exact(sock, _LEN.unpack(_recv_exact(sock, _LEN.size))[0]))
            except (OSError, TransferError):
                sock.close()
                if reused and attempt == 1:
                    continue  # the kept connection had gone stale: one fresh try
                raise
            with self._lock:
                self._idle.append(sock)
            break
        if not reply.get("ok"):
            raise TransferError(f"receiver at {self.address[0]}: {reply.get('error')}")
        return {"bytes": total, "files": len(entries), "seconds": time.monotonic() - started,
                "reply": reply}

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


class _Receive(socketserver.BaseRequestHandler):
    inbox: Path
    on_arrival = None
    ahead_of_arrival = None

    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                sock.settimeout(None)
                header = sock.recv(_LEN.size, socket.MSG_WAITALL)
                if len(header) < _LEN.size:
                    return
                sock.settimeout(600)
                manifest = json.loads(_recv_exact(sock, _LEN.unpack(header)[0]))
            except (OSError, ValueError, TransferError):
                return
            try:
                if manifest.get("then") and self.ahead_of_arrival is not None:
                    self.ahead_of_arrival(manifest["then"])
                self._store(sock, manifest)
                arrived = time.time()
                reply = {"ok": True, "arrived": arrived}
                if manifest.get("then") and self.on_arrival is not None:
                    reply["result"] = self.on_arrival(manifest["then"])
                    reply["done"] = time.time()
            except Exception as exc:  # tell the sender; keep the connection for the next push
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(reply, default=str).encode()
            try:
                sock.sendall(_LEN.pack(len(data)) + data)
            except OSError:
                return

    def _store(self, sock, manifest: dict) -> None:
        """Write the push's files; if that fails (bad name, disk full), read the rest of the
        push anyway and then raise: the stream stays in frame, so the sender gets the reply
        with the real error instead of a broken pipe."""
        failure: Exception | None = None
        target: Path | None = None
        try:
            target = self.inbox / _safe(manifest["service"]) / _safe(manifest["slot"])
            for entry in manifest["files"]:
                relative = Path(entry["path"])
                if relative.is_absolute() or ".." in relative.parts:
                    raise TransferError(f"refusing path {relative}")
            if manifest.get("clear"):
                shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
        except (OSError, TransferError) as exc:
            failure = exc
        try:
            for entry in manifest["files"]:
                handle = None
                if failure is None and not target.is_dir():
                    # removed while it arrived (the migration was fenced or aborted): bytes still in
                    # flight must not bring it back; read them to stay in frame
                    failure = TransferError(f"slot {target.name} was removed while it arrived")
                if failure is None:
                    try:
                        destination = target / entry["path"]
                        destination.parent.mkdir(parents=True, exist_ok=True)
                        handle = open(destination, "wb")
                    except OSError as exc:
                        failure = exc
                remaining = int(entry["size"])
                try:
                    while remaining:
                        chunk = sock.recv(min(remaining, CHUNK))
                        if not chunk:
                            raise TransferError("sender closed the stream early")
                        remaining -= len(chunk)
                        if handle is not None:
                            try:
                                handle.write(chunk)
                            except OSError as exc:
                                failure = exc
                                _close(handle)
                                handle = None
                finally:
                    if handle is not None:
                        closed = _close(handle)         # a full disk may show only at the flush
                        failure = failure or closed
        except (OSError, TransferError):
            # the stream broke (sender gone, path cut): what came of this push is not state, and
            # bytes still in flight when a fence removed the slot must not bring it back
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.suppress(OSError):
                    target.parent.rmdir()           # the service's folder, if nothing else is in it
            raise
        if failure is not None:
            raise failure


def _close(handle) -> OSError | None:
    try:
        handle.close()
    except OSError as exc:
        return exc
    return None


def _safe(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise TransferError(f"bad name {name!r}")
    return name


class FileReceiver(socketserver.ThreadingTCPServer):
    """Receives pushes into ``inbox``; runs ``on_arrival(order)`` for pushes that carry one, and
    ``ahead_of_arrival(order)`` as soon as their manifest is in, before the files."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], inbox: Path, on_arrival=None, ahead_of_arrival=None):
        inbox.mkdir(parents=True, exist_ok=True)
        handler = type("BoundReceive", (_Receive,), {
            "inbox": inbox, "on_arrival": staticmethod(on_arrival) if on_arrival else None,
            "ahead_of_arrival": staticmethod(ahead_of_arrival) if ahead_of_arrival else None})
        super().__init__(address, handler)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        return thread


def rsync_push(source: Path, address: str, module: str, relative: str, port: int,
               exclude: tuple[str, ...] = ()) -> dict:
    """rsync ``source/`` to ``rsync://address:port/module/relative/`` (incremental); files named
    in ``exclude`` are neither sent nor kept there."""
    started = time.monotonic()
    leave_out = [f"--exclude={name}" for name in exclude] + (["--delete-excluded"] if exclude else [])
    result = subprocess.run(
        ["rsync", "-a", "--delete", *leave_out, "--stats", f"--port={port}", f"{source}/",
         f"rsync://{address}/{module}/{relative}/"], capture_output=True, text=True)
    if result.returncode != 0:
        raise TransferError(f"rsync to {address} failed: {result.stderr.strip()}")
    sent = 0
    for line in result.stdout.splitlines():
        if line.startswith("Total bytes sent:"):
            sent = int(line.split(":")[1].strip().replace(",", ""))
    return {"bytes": sent, "seconds": time.monotonic() - started}


def rsyncd_config(path: Path, module_root: Path, module: str = "layers") -> Path:
    path.write_text(
        f"[{module}]\n  path = {module_root}\n  read only = false\n  use chroot = false\n"
        "  uid = root\n  gid = root\n")
    return path


def start_rsyncd(config: Path, address: str, port: int) -> subprocess.Popen:
    """An rsync daemon bound to one server's address (run inside its namespace)."""
    return subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={config}", f"--address={address}",
                             f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=os.setpgrp)
