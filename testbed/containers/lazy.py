"""Post-copy with CRIU's lazy pages: the processes that move memory after the restore.

At the source, ``LazyCheckpoint``: ``runc checkpoint --lazy-pages`` dumps all but
the memory pages, then CRIU's page server (on an address of the source server)
serves them while the dumped processes wait, stopped; once every page has gone
CRIU ends them.  At the destination, ``LazyPagesDaemon``: ``criu lazy-pages``,
started by the agent in its server's network namespace (so pages cross the
emulated WAN), fetches each page the restored service faults on, and the rest in
the background, through a ``PrepagingRelay`` process (``testbed.containers.prepaging``)
that pulls every page ahead unless the mode's window is 0.
The restore reaches the daemon through a socket that the
post-copy runtime (``testbed.containers.criu``) links into runc's work directory.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from testbed.containers.prepaging import GIVE_UP, PAGE

READY_TIMEOUT_S = 60.0          # a lazy dump, until its page server listens
DAEMON_START_TIMEOUT_S = 10.0   # the lazy-pages daemon, until its socket is there


class LazyError(RuntimeError):
    """A post-copy step failed; the message says which and CRIU's own words."""


def _errors(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return " ".join([line.strip() for line in lines if "Error" in line][-3:])


class LazyCheckpoint:
    """The source's side: CRIU serving the pages of stopped processes."""

    def __init__(self, process: subprocess.Popen, work: Path, page_server: tuple[str, int],
                 front: subprocess.Popen | None = None):
        self.process, self.work, self.page_server, self.front = process, work, page_server, front

    @classmethod
    def start(cls, runc: list[str], container_id: str, images: Path, page_server: tuple[str, int],
              base: Path | None = None) -> "LazyCheckpoint":
        """Run ``runc`` (the command up to its ``checkpoint`` verb's options) lazily on the
        container; returns once the images are written and the page server listens.
        ``base``: the checkpoint the destination holds already (a post-copy after a pre-copy):
        CRIU's page server then listens on loopback, and a process of ours
        (``prepaging.serve_delta``) on ``page_server``, which sends only the pages that changed."""
        work = images.with_name(images.name + ".work")
        shutil.rmtree(work, ignore_errors=True)
        criu_at = page_server if base is None else free_address("127.0.0.1")
        ready, status = os.pipe()
        try:
            process = subprocess.Popen(
                runc + ["--image-path", str(images), "--work-path", str(work), "--lazy-pages",
                        "--page-server", f"{criu_at[0]}:{criu_at[1]}", "--status-fd", str(status),
                        container_id],
                pass_fds=(status,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        finally:
            os.close(status)
        try:
            readable, _, _ = select.select([ready], [], [], READY_TIMEOUT_S)
            signalled = bool(readable) and os.read(ready, 1) != b""    # not when CRIU ended first
        finally:
            os.close(ready)
        checkpoint = cls(process, work, page_server)
        if signalled and base is not None:
            base = _linked(base, ("pagemap-*.img", "pages-*.img"), work / "base")
            with socket.create_server(page_server) as listener:
                checkpoint.front = subprocess.Popen(
                    [sys.executable, "-m", "testbed.containers.prepaging", "source", str(base), criu_at[0],
                     str(criu_at[1]), str(listener.fileno())],
                    pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
        if not signalled:
            checkpoint.abandon()
            raise LazyError(f"lazy checkpoint failed: {checkpoint.failure()}")
        return checkpoint

    def wait(self, timeout: float) -> dict:
        """Until the destination has every page (CRIU ends, and the processes here with it):
        ``ok``, the bytes of memory that crossed after the restore (``lazy_bytes``), ``error``."""
        try:
            self.process.wait(timeout)
            result = {"ok": self.process.returncode == 0}
            if not result["ok"]:
                result["error"] = self.failure()
        except subprocess.TimeoutExpired:
            self.abandon()
            result = {"ok": False, "error": f"pages still going after {timeout} s"}
        result["lazy_bytes"] = self.lazy_bytes()
        if self.front is not None:
            result["sent"] = self._front_result()
        shutil.rmtree(self.work, ignore_errors=True)
        return result

    def _front_result(self) -> dict:
        """What ``serve_delta`` sent (empty if it failed: its error is in ``failure()``)."""
        try:
            out, _ = self.front.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.front.kill()
            out, _ = self.front.communicate()
        lines = out.strip().splitlines()
        return json.loads(lines[-1]) if self.front.returncode == 0 and lines else {}

    def lazy_bytes(self) -> int:
        """Memory left to the page server (CRIU's dump log counts the pages per mapping)."""
        log = self.work / "dump.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return PAGE * sum(int(line.split("(")[-1].split()[0]) for line in lines
                          if "Pagemap generated:" in line and " lazy)" in line)

    def failure(self) -> str:
        stderr = self.process.stderr.read() if self.process.poll() is not None and self.process.stderr else ""
        if self.front is not None and self.front.poll() not in (None, 0) and self.front.stderr:
            stderr += f" (in front of the page server: {self.front.stderr.read().strip()})"
        return f"{stderr.strip()} {_errors(self.work / 'dump.log')}".strip() or \
            f"runc ended with {self.process.returncode}"

    def abandon(self) -> None:
        """Give up: an unknown command makes the page server fail, and CRIU then lets the
        processes run on here, as after any failed dump.  Once the destination holds the
        page server's one connection, it sends that command itself when its restore fails.
        If CRIU does not end, it is killed."""
        if self.process.poll() is None:
            try:
                try:
                    with socket.create_connection(self.page_server, timeout=5) as connection:
                        connection.sendall(GIVE_UP)
                except ConnectionRefusedError:
                    pass                    # connected already: the destination gives up
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if self.front is not None and self.front.poll() is None:
            self.front.kill()
            self.front.wait()


class LazyPagesDaemon:
    """The destination's side: ``criu lazy-pages`` for one restore, in this process's network
    namespace; it ends by itself once every page has arrived (reaped by a thread)."""

    def __init__(self, process: subprocess.Popen, work: Path, relay: subprocess.Popen | None = None):
        self.process, self.work, self.relay = process, work, relay
        for child in filter(None, (process, relay)):
            threading.Thread(target=child.wait, daemon=True, name="lazy-pages-reaper").start()

    @property
    def socket(self) -> Path:
        return self.work / "lazy-pages.socket"

    @classmethod
    def start(cls, images: Path, page_server: tuple[str, int], work: Path,
              prepaging_window: int = 0, base: Path | None = None,
              upstream: socket.socket | None = None) -> "LazyPagesDaemon":
        """``prepaging_window`` (bytes): with more than 0, the daemon reaches the source
        through a ``PrepagingRelay`` process that pulls every page ahead with that many
        bytes of requests in flight; with 0, it asks the source itself (CRIU's own pace).
        The relay's listening socket is made here and inherited, so neither waits for the
        other to start.  ``base``: the pre-copied checkpoint, for a post-copy after a
        pre-copy (a relay is needed then: the source sends only the pages that changed).
        ``upstream``: the relay's connection to the source, opened already (``EarlyConnection``;
        handed over, closed here)."""
        if base is not None and prepaging_window <= 0:
            raise LazyError("a post-copy after a pre-copy needs the pre-paging relay (a window above 0)")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        relay = None
        if prepaging_window > 0:
            # the relay reads its own links to the images: the restore deletes them once read
            ranges = _linked(images, ("pagemap-*.img", "core-*.img"), work / "relay-images")
            if base is not None:
                base = _linked(base, ("pagemap-*.img", "pages-*.img"), work / "relay-base")
            inherited = [upstream.fileno()] if upstream is not None else []
            with socket.create_server(("127.0.0.1", 0)) as listener, open(work / "prepaging.log", "w") as log:
                relay = subprocess.Popen(
                    [sys.executable, "-m", "testbed.containers.prepaging", "relay", str(ranges),
                     str(prepaging_window), *(["--base", str(base)] if base is not None else []),
                     *([f"--upstream-fd={upstream.fileno()}"] if upstream is not None else []),
                     page_server[0], str(page_server[1]), str(listener.fileno())],
                    pass_fds=(listener.fileno(), *inherited), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=log)
                page_server = listener.getsockname()
        if upstream is not None:
            upstream.close()            # the relay has its own copy (without a relay: nobody's, see the caller)
        process = subprocess.Popen(
            ["criu", "lazy-pages", "--page-server", "--address", page_server[0], "--port", str(page_server[1]),
             "--images-dir", str(images), "--work-dir", str(work), "-o", "lazy-pages.log"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon = cls(process, work, relay)
        deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
        while not daemon.socket.is_socket():
            if relay is not None and relay.poll() is not None:
                problem = (work / "prepaging.log").read_text(errors="replace").strip()
                daemon.stop()
                raise LazyError(f"the pre-paging relay ended: {problem}")
            if process.poll() is not None or time.monotonic() > deadline:
                daemon.stop()
                raise LazyError(f"criu lazy-pages did not start: {_errors(work / 'lazy-pages.log')}")
            time.sleep(0.002)
        return daemon

    def restored(self) -> None:
        """The service runs again (its restore is over): pre-paging may start."""
        self._tell_relay("restored")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        if self.relay is not None:
            self._tell_relay("stop")        # the source is told to give up, if it still waits
            try:
                self.relay.wait(10)
            except subprocess.TimeoutExpired:
                self.relay.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def _tell_relay(self, command: str) -> None:
        if self.relay is not None and self.relay.poll() is None:
            try:
                self.relay.stdin.write(f"{command}\n".encode())
                self.relay.stdin.flush()
            except OSError:             # it has just ended
                pass


class EarlyConnection:
    """The destination's connection to the source's page server, opened as soon as the order
    to restore is known (it travels ahead of the checkpoint's files): the TCP handshake, one
    round trip, then overlaps the transfer instead of delaying the restore's first fault.
    CRIU's page server takes one connection, so one made here is the relay's or nobody's."""

    def __init__(self, page_server: tuple[str, int]):
        self._socket: socket.socket | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        threading.Thread(target=self._connect, args=(tuple(page_server),), daemon=True,
                         name="page-server-connect").start()

    def _connect(self, page_server: tuple[str, int]) -> None:
        try:
            connection = socket.create_connection(page_server, timeout=READY_TIMEOUT_S)
        except OSError:
            connection = None           # the relay will try itself (and say why it fails)
        with self._lock:
            if self._closed and connection is not None:
                connection.close()
            else:
                self._socket = connection
        self._done.set()

    def take(self, timeout: float = READY_TIMEOUT_S) -> socket.socket | None:
        """The connection (the caller's from now on), or None if it could not be made."""
        self._done.wait(timeout)
        with self._lock:
            connection, self._socket, self._closed = self._socket, None, True
        return connection

    def close(self) -> None:
        connection = self.take(timeout=0)
        if connection is not None:
            connection.close()


def _linked(images: Path, patterns: tuple[str, ...], into: Path) -> Path:
    """``into``, with hard links to the files of ``images`` that match ``patterns`` (copies
    across file systems): a helper process reads them at its own pace, and the agents
    delete a checkpoint as soon as the restore has read it."""
    into.mkdir(parents=True)
    for pattern in patterns:
        for path in images.glob(pattern):
            try:
                os.link(path, into / path.name)
            except OSError:
                shutil.copyfile(path, into / path.name)
    return into


def free_address(address: str) -> tuple[str, int]:
    """``address`` and a port free on it now, for a page server."""
    with socket.socket() as free:
        free.bind((address, 0))
        return address, free.getsockname()[1]
