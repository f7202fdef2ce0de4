"""Moving migration state between servers, across the emulated WAN.

* ``push_files``/``FileReceiver``: one TCP stream per transfer carrying a JSON
  manifest and then the bytes of every file (checkpoints, delta batches,
  instance layers) from the source agent to the destination agent.
* ``delta_batch``/``apply_batch``: rsync's delta algorithm in batch mode.  The
  source keeps a copy of what the destination already holds (the pre-migration
  checkpoint), lets rsync write the instructions that turn it into the new
  checkpoint (``--only-write-batch``), ships that one file, and the destination
  replays it (``--read-batch``).  One transfer, no rsync round trips on the WAN
  while the service is down.
* ``rsync_push``: plain rsync to the destination's rsync daemon, for seed 001's
  application layer (incremental file sync: nothing is sent when the layer is
  already there).

Nothing is ever copied through the host's filesystem from one server's
directory to another's: every byte crosses the links between the two servers.
"""

from __future__ import annotations

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
CHUNK = 1 << 20


class TransferError(RuntimeError):
    pass


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        chunk = sock.recv(min(size, CHUNK))
        if not chunk:
            raise TransferError("sender closed the stream early")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def push_files(address: tuple[str, int], service: str, slot: str, root: Path, files: list[Path] | None = None,
               clear: bool = True, timeout: float = 600.0) -> dict:
    """Send ``files`` (default: everything under ``root``) to the receiver at ``address``.

    They land in the receiver's ``incoming/<service>/<slot>/`` with the same
    relative paths.  Returns bytes sent and the transfer time.
    """
    root = Path(root)
    files = files if files is not None else sorted(p for p in root.rglob("*") if p.is_file())
    entries = [{"path": str(Path(f).relative_to(root)), "size": Path(f).stat().st_size} for f in files]
    manifest = json.dumps({"service": service, "slot": slot, "clear": clear, "files": entries}).encode()
    started = time.monotonic()
    total = sum(e["size"] for e in entries)
    with socket.create_connection(address, timeout=30) as sock:
        sock.settimeout(timeout)
        sock.sendall(_LEN.pack(len(manifest)) + manifest)
        for path in files:
            with open(path, "rb") as handle:
                sock.sendfile(handle)
        reply = json.loads(_recv_exact(sock, _LEN.unpack(_recv_exact(sock, _LEN.size))[0]))
    if not reply.get("ok"):
        raise TransferError(f"receiver refused: {reply.get('error')}")
    return {"bytes": total, "files": len(entries), "seconds": time.monotonic() - started}


class _Receive(socketserver.BaseRequestHandler):
    inbox: Path

    def handle(self):
        sock = self.request
        sock.settimeout(600)
        try:
            manifest = json.loads(_recv_exact(sock, _LEN.unpack(_recv_exact(sock, _LEN.size))[0]))
            target = self.inbox / _safe(manifest["service"]) / _safe(manifest["slot"])
            if manifest.get("clear"):
                shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
            for entry in manifest["files"]:
                relative = Path(entry["path"])
                if relative.is_absolute() or ".." in relative.parts:
                    raise TransferError(f"refusing path {relative}")
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                remaining = int(entry["size"])
                with open(destination, "wb") as handle:
                    while remaining:
                        chunk = sock.recv(min(remaining, CHUNK))
                        if not chunk:
                            raise TransferError("sender closed the stream early")
                        handle.write(chunk)
                        remaining -= len(chunk)
            reply = {"ok": True}
        except Exception as exc:  # tell the sender; keep receiving other transfers
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(reply).encode()
        try:
            sock.sendall(_LEN.pack(len(data)) + data)
        except OSError:
            pass


def _safe(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise TransferError(f"bad name {name!r}")
    return name


class FileReceiver(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], inbox: Path):
        inbox.mkdir(parents=True, exist_ok=True)
        handler = type("BoundReceive", (_Receive,), {"inbox": inbox})
        super().__init__(address, handler)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        return thread


def delta_batch(new: Path, base: Path, batch: Path) -> dict:
    """Write the rsync batch that turns directory ``base`` into ``new`` (``base`` unchanged)."""
    batch.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (batch, batch.with_name(batch.name + ".sh")):
        leftover.unlink(missing_ok=True)
    started = time.monotonic()
    result = subprocess.run(
        ["rsync", "-a", "--no-whole-file", "--delete", f"--only-write-batch={batch}",
         f"{new}/", f"{base}/"], capture_output=True, text=True)
    if result.returncode != 0:
        raise TransferError(f"rsync --only-write-batch failed: {result.stderr.strip()}")
    batch.with_name(batch.name + ".sh").unlink(missing_ok=True)
    return {"bytes": batch.stat().st_size, "seconds": time.monotonic() - started}


def apply_batch(batch: Path, target: Path) -> float:
    """Replay an rsync batch onto ``target`` (which must hold the batch's base)."""
    started = time.monotonic()
    result = subprocess.run(["rsync", "-a", "--delete", f"--read-batch={batch}", f"{target}/"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise TransferError(f"rsync --read-batch failed: {result.stderr.strip()}")
    return time.monotonic() - started


def rsync_push(source: Path, address: str, module: str, relative: str, port: int) -> dict:
    """rsync ``source/`` to ``rsync://address:port/module/relative/`` (incremental)."""
    started = time.monotonic()
    result = subprocess.run(
        ["rsync", "-a", "--delete", "--stats", f"--port={port}", f"{source}/",
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
