"""Active pre-paging for post-copy: a relay between CRIU's lazy-pages daemon and the source.

CRIU's daemon asks the source's page server for a page when the restored service
faults on it, and for the rest one request at a time, 64 kB per round trip while
faults keep coming: on a 100 ms WAN a model service's memory takes minutes to arrive,
and the service, faulting page by page, answers late all that while.  The relay, a process
the destination's agent starts on loopback in its server's namespace, holds the one
connection to the source (opened while the container restores, so the first fault
does not wait for a TCP handshake), pulls every lazy page in order with a window of
requests in flight (which fills the link), and answers the daemon from what has
arrived.  A page the daemon asks for that is neither here nor on its way is asked
for at once.  This is the post-copy with active pushing / pre-paging of the live
migration literature (Hines and Gopalan, VEE 2009).

The pages to pull are the entries flagged lazy in the checkpoint's pagemap images.
The wire format is CRIU's page-server protocol (``criu/page-xfer.c``): a request is
a 32-byte ``page_server_iov`` (cmd u32, nr_pages u64, vaddr u64, dst_id u64, the
process's pid in the images) with cmd ``PS_IOV_GET``; the answer is that header with
the number of pages sent (at most to the end of the range the source holds there),
then the pages; answers come in the order of the requests.  The daemon ends with
``PS_IOV_CLOSE``, answered by a 4-byte status, after which the source ends the dumped
processes.  A command the source does not know makes it fail instead, and CRIU then
lets the processes run on there: the relay sends one when it gives up early.

Post-copy after a pre-copy (``precopy-delta`` with ``postcopy``): both servers hold the
pre-copied checkpoint (``BasePages``), so a page that has not changed since need not
cross.  Without soft-dirty tracking CRIU cannot tell which did, so the source compares:
``serve_delta`` stands in for CRIU's page server on the WAN, fetches each requested
range from it over loopback and answers the relay with ``PS_IOV_DELTA``, a bitmap of
the pages that changed and only those; the relay takes the others from its own copy.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import mmap
import selectors
import shutil
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from testbed.containers.criu_images import PAGE, PE_LAZY, PE_PRESENT, image_entries, rseq_pages, stored_pages

HEADER = struct.Struct("<I4xQQQ")          # struct page_server_iov (x86-64 alignment)
PS_IOV_GET = 7
PS_IOV_ADD_F = 6
PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE = 0x1023, 0x1024
PS_IOV_DELTA = 0x4D45                      # the testbed's own answer (CRIU has none such): header,
                                           # a bit per page (1: it changed, its bytes follow), the pages
PS_CMD_BITS = 16
GIVE_UP = b"\xff" * HEADER.size            # an unknown command: the source fails and resumes
# CRIU's page server takes a connection closed without a word for the end of a post-copy and
# ends the dumped processes: closed by anything but the relay's clean end (the agent killed,
# say), the connection is reset instead, which CRIU takes for a failure (it resumes them).
RESET_ON_CLOSE = struct.pack("ii", 1, 0)
CHUNK = 64 * PAGE                          # one pre-paging request (256 kB)
QUEUE_TARGET_S = 0.05                      # longest a fault's page should wait behind pre-paging
CONNECT_TIMEOUT_S = 30.0
KEPT_BYTES = 64 << 20                      # pages given to the daemon kept for its repeated requests
# CRIU's daemon asks again at once when its copy into the process fails (EAGAIN while the
# process changes its mappings): answered at once from what is kept, the two would spin on
# both cores and starve the process that must finish that change; the answer to the same
# request again waits 1 ms, then twice as long each time, up to a round trip's worth
REPEAT_FIRST_WAIT_S, REPEAT_LONGEST_WAIT_S = 0.001, 0.1
REPEAT_GIVE_UP_S = 30.0                    # the same request for that long: the post-copy fails


def lazy_ranges(images: Path) -> list[tuple[int, int, int]]:
    """(pid, first address, pages) of every lazy entry in the checkpoint's pagemaps."""
    ranges = []
    for pagemap in sorted(images.glob("pagemap-*.img")):
        pid = pagemap.stem.removeprefix("pagemap-")
        if not pid.isdigit():          # pagemap-shmem-*: shared memory is restored whole
            continue
        for entry in image_entries(pagemap)[1:]:     # the first is the pagemap head
            flags = entry.get(4, 0)
            if flags & PE_LAZY:
                ranges.append((int(pid), entry[1], entry.get(5, entry.get(2, 0))))
    return ranges


class BasePages:
    """The memory of a full checkpoint by process and address, its pages files mapped (the
    mapping outlives the files: the agents delete a checkpoint once it is restored)."""

    def __init__(self, images: Path):
        self._where: dict[int, dict[int, int]] = {}          # pid -> address -> offset in its pages file
        self._data: dict[int, mmap.mmap | bytes] = {}
        for pagemap in sorted(images.glob("pagemap-*.img")):
            pid = pagemap.stem.removeprefix("pagemap-")
            if not pid.isdigit():
                continue
            name, addresses = stored_pages(pagemap)
            pages = images / name
            size = pages.stat().st_size if pages.exists() else 0
            if size < len(addresses) * PAGE:
                raise ValueError(f"{pages}: {size} bytes, but {pagemap.name} puts {len(addresses)} pages there")
            self._where[int(pid)] = {address: index * PAGE for index, address in enumerate(addresses.tolist())}
            if size:
                with open(pages, "rb") as file:
                    self._data[int(pid)] = mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ)
            else:
                self._data[int(pid)] = b""

    def page(self, pid: int, vaddr: int):
        """The page held at ``vaddr`` of ``pid``, or None."""
        offset = self._where.get(pid, {}).get(vaddr)
        return None if offset is None else self._data[pid][offset:offset + PAGE]

    def changes(self, pid: int, vaddr: int, data: bytes) -> bytes:
        """``PS_IOV_DELTA``'s body for ``data`` (pages from ``vaddr`` on): the bitmap of the
        pages that differ from the ones held here, then those pages."""
        mask, changed, count = 0, [], len(data) // PAGE
        for index in range(count):
            new = data[index * PAGE:(index + 1) * PAGE]
            if self.page(pid, vaddr + index * PAGE) != new:
                mask |= 1 << index
                changed.append(new)
        return mask.to_bytes((count + 7) // 8, "little") + b"".join(changed)

    def rebuild(self, pid: int, vaddr: int, count: int, bitmap: bytes, changed: bytes) -> bytes:
        """The ``count`` pages from ``vaddr`` on that a ``PS_IOV_DELTA`` answer stands for."""
        mask, pages, taken = int.from_bytes(bitmap, "little"), [], 0
        for index in range(count):
            if mask >> index & 1:
                pages.append(changed[taken * PAGE:(taken + 1) * PAGE])
                taken += 1
                continue
            held = self.page(pid, vaddr + index * PAGE)
            if held is None:
                raise ValueError(f"the source left out page {vaddr + index * PAGE:#x} of pid {pid}, "
                                 f"which the pre-copied checkpoint does not hold")
            pages.append(held)
        return b"".join(pages)


def delta_size(bitmap: bytes) -> int:
    """Bytes of pages that follow a ``PS_IOV_DELTA`` bitmap."""
    return int.from_bytes(bitmap, "little").bit_count() * PAGE


class PrepagingRelay:
    """Listens on loopback for the lazy-pages daemon; see the module's docstring.

    The source answers in order, so a fault's page waits behind every pre-paging request
    in flight.  The bytes in flight are therefore sized by delay, as background
    transfers do (LEDBAT, RFC 6817): one request more while answers come within
    ``QUEUE_TARGET_S`` of the quickest one seen, one less otherwise.  This follows the
    connection's own rate (TCP's slow start, then the link's bandwidth-delay product)
    up to ``max_window`` bytes."""

    def __init__(self, images: Path, page_server: tuple[str, int], max_window: int,
                 listener: socket.socket | None = None, base: BasePages | None = None,
                 upstream: socket.socket | None = None):
        self.base = base                                      # the pre-copied memory (page_server: serve_delta)
        self.upstream = upstream                              # connected to page_server already, or None
        ranges = lazy_ranges(images)
        self.plan = collections.deque([pid, start, start + pages * PAGE] for pid, start, pages in ranges)
        # the restore's own faults, asked for as soon as the source is reached: together in one
        # round trip, while CRIU is still setting up, rather than one after the other
        self.restore_faults = sorted({(pid, page) for page in rseq_pages(images)
                                      for pid, start, pages in ranges if start <= page < start + pages * PAGE})
        self.page_server, self.max_window = page_server, max(max_window, PAGE)
        self.window, self.quickest = min(2 * CHUNK, self.max_window), float("inf")
        self.listener = listener or socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.arrived: dict[tuple[int, int], bytes] = {}       # pages here, not yet given to the daemon
        self.asked: set[tuple[int, int]] = set()              # pages on their way
        self.given: set[tuple[int, int]] = set()              # pages the daemon has
        # the last KEPT_BYTES of them: the daemon asks again for pages it has just been given
        # (a fault on a page its own background request brought), one round trip each otherwise
        self.kept: collections.OrderedDict[tuple[int, int], bytes] = collections.OrderedDict()
        self.last_answered: tuple[int, int, int] | None = None
        self.repeat_since = self.repeat_due = 0.0
        self.repeat_wait = 0.0
        self.upstream_queue: collections.deque = collections.deque()   # requests sent, in order
        self.daemon_queue: collections.deque = collections.deque()     # the daemon's requests, in order
        self.in_flight = 0
        self._out = {"upstream": bytearray(), "daemon": bytearray()}     # bytes to send, by connection
        self.prepaged = self.fetched = 0                      # bytes pulled ahead / asked for by faults
        self.received = 0                                     # bytes the source sent (less with a base)
        self.closed_cleanly = False
        self.error: str | None = None
        self._stopping, self._restored = threading.Event(), threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._run, daemon=True, name="prepaging-relay")
        self._thread.start()

    def restored(self) -> None:
        """The service runs: pre-page from now on.  Not before: during the restore, CRIU
        faults on a few pages one after the other, and each would wait behind the window."""
        self._restored.set()
        self._wake()

    def stop(self) -> None:
        """End the relay; before the daemon's close this makes the source give up (and
        resume its processes)."""
        self._stopping.set()
        self._wake()
        self._thread.join(10)

    def wait(self) -> None:
        """Until the relay has ended."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):      # the loop has ended already
            self._wake_writer.send(b"!")

    # -- the loop --------------------------------------------------------------------
    def _run(self) -> None:
        upstream = daemon = None
        try:
            upstream = self.upstream or socket.create_connection(self.page_server, timeout=CONNECT_TIMEOUT_S)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            # the restore's own faults, asked for now: the daemon connects only once CRIU restores
            for pid, page in self.restore_faults:
                self._ask("restore", pid, page, 1)
            upstream.sendall(self._out["upstream"])
            self._out["upstream"].clear()
            self.listener.settimeout(0.1)
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while daemon is None and not self._stopping.is_set():
                try:
                    daemon, _ = self.listener.accept()
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise ConnectionError("the lazy-pages daemon never connected") from None
            if daemon is not None:
                self._serve(upstream, daemon)
        except (OSError, ValueError) as error:
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.listener.close()
            if upstream is not None:
                if self.closed_cleanly:     # the source waits for our end of the connection
                    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
                else:
                    with contextlib.suppress(OSError):
                        upstream.setblocking(True)
                        upstream.sendall(GIVE_UP)
                upstream.close()
            if daemon is not None:
                daemon.close()
            self._wake_reader.close()
            self._wake_writer.close()

    def _serve(self, upstream: socket.socket, daemon: socket.socket) -> None:
        upstream.setblocking(False)
        daemon.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(upstream, selectors.EVENT_READ, "upstream")
        selector.register(daemon, selectors.EVENT_READ, "daemon")
        selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        self._sockets = {"upstream": upstream, "daemon": daemon}
        from_upstream, from_daemon = bytearray(), bytearray()
        while not self._stopping.is_set():
            self._pre_page()
            for name, sock in self._sockets.items():
                selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if self._out[name] else 0), name)
            for key, events in selector.select(min(0.2, max(0.0, self.repeat_due - time.monotonic()))
                                                if self.repeat_due else 0.2):
                name = key.data
                if name == "wake":
                    self._wake_reader.recv(64)
                    continue
                try:
                    if events & selectors.EVENT_WRITE:
                        sent = key.fileobj.send(self._out[name])
                        del self._out[name][:sent]
                    data = key.fileobj.recv(1 << 20) if events & selectors.EVENT_READ else None
                except OSError as error:
                    raise ConnectionError(f"the {name}'s connection failed: {error}") from None
                if data is not None:
                    if not data:
                        if self.closed_cleanly:     # the source answered the close: done
                            self._flush(daemon)
                            return
                        raise ConnectionError(f"the {name} closed the connection")
                    if name == "upstream":
                        from_upstream += data
                        self._take_answers(from_upstream)
                    else:
                        from_daemon += data
                        self._take_requests(from_daemon)
            self._answer_daemon()

    def _flush(self, daemon: socket.socket) -> None:
        try:
            daemon.setblocking(True)
            daemon.sendall(self._out["daemon"])
        except OSError:
            pass

    # -- the source's answers ---------------------------------------------------------
    def _take_answers(self, buffer: bytearray) -> None:
        while self.upstream_queue:
            request = self.upstream_queue[0]
            if request[0] == "close":
                if len(buffer) < 4:
                    return
                self._out["daemon"] += buffer[:4]
                del buffer[:4]
                self.upstream_queue.popleft()
                self.closed_cleanly = True
                continue
            if len(buffer) < HEADER.size:
                return
            command, pages, vaddr, pid = HEADER.unpack_from(buffer)
            kind, asked_pid, asked_vaddr, asked_pages, asked_at = request
            if (pid, vaddr) != (asked_pid, asked_vaddr) or not 0 < pages <= asked_pages:
                raise ValueError(f"the source answered {pages} pages at {vaddr:#x} of pid {pid} "
                                 f"to a request for {asked_pages} at {asked_vaddr:#x} of pid {asked_pid}")
            if command == PS_IOV_DELTA:
                if self.base is None:
                    raise ValueError("the source answered with changed pages only, and no pre-copy is held here")
                bits = HEADER.size + (pages + 7) // 8
                if len(buffer) < bits or len(buffer) < bits + delta_size(buffer[HEADER.size:bits]):
                    return
                size = bits + delta_size(buffer[HEADER.size:bits])
                data = self.base.rebuild(pid, vaddr, pages, bytes(buffer[HEADER.size:bits]), bytes(buffer[bits:size]))
            else:
                size = HEADER.size + pages * PAGE
                if len(buffer) < size:
                    return
                data = bytes(buffer[HEADER.size:size])
            self.upstream_queue.popleft()
            self.received += size
            del buffer[:size]
            for index in range(asked_pages):
                key = (pid, vaddr + index * PAGE)
                self.asked.discard(key)
                if index < pages:
                    self.arrived[key] = data[index * PAGE:(index + 1) * PAGE]
            if pages < asked_pages:      # the rest lies in another of the source's ranges
                self.plan.appendleft([pid, vaddr + pages * PAGE, vaddr + asked_pages * PAGE])
            if kind == "ahead":
                self.in_flight -= asked_pages * PAGE
                self.prepaged += pages * PAGE
                self._pace(time.monotonic() - asked_at)
            else:
                self.fetched += pages * PAGE
                self.quickest = min(self.quickest, time.monotonic() - asked_at)

    def _pace(self, waited: float) -> None:
        self.quickest = min(self.quickest, waited)
        if waited <= self.quickest + QUEUE_TARGET_S:
            self.window = min(self.window + CHUNK, self.max_window)
        else:
            self.window = max(self.window - CHUNK, min(CHUNK, self.max_window))

    def _ask(self, kind: str, pid: int, vaddr: int, pages: int) -> None:
        self._out["upstream"] += HEADER.pack(PS_IOV_GET, pages, vaddr, pid)
        self.upstream_queue.append((kind, pid, vaddr, pages, time.monotonic()))
        self.asked.update((pid, vaddr + index * PAGE) for index in range(pages))

    def _taken(self, key: tuple[int, int]) -> bool:
        return key in self.arrived or key in self.asked or key in self.given

    def _pre_page(self) -> None:
        """Keep ``window`` bytes of requests for the next pages not yet taken on their way."""
        while self.plan and self.in_flight < self.window and self._restored.is_set() and not self._closing():
            pid, start, end = self.plan[0]
            while start < end and self._taken((pid, start)):
                start += PAGE
            pages = 0
            while start + pages * PAGE < end and pages * PAGE < min(CHUNK, self.window) and not self._taken((pid, start + pages * PAGE)):
                pages += 1
            if pages:
                self._ask("ahead", pid, start, pages)
                self.in_flight += pages * PAGE
            start += pages * PAGE
            if start >= end:
                self.plan.popleft()
            else:
                self.plan[0][1] = start

    def _closing(self) -> bool:
        return any(request[0] == "close" for request in self.upstream_queue)

    # -- the daemon's requests --------------------------------------------------------
    def _take_requests(self, buffer: bytearray) -> None:
        while len(buffer) >= HEADER.size:
            command, pages, vaddr, pid = HEADER.unpack_from(buffer)
            del buffer[:HEADER.size]
            if command & ((1 << PS_CMD_BITS) - 1) == PS_IOV_GET:
                self.daemon_queue.append((pid, vaddr, pages))
                if not any((pid, vaddr) in held for held in (self.arrived, self.kept, self.asked)):
                    wanted = 1
                    while wanted < pages and not self._taken((pid, vaddr + wanted * PAGE)):
                        wanted += 1
                    self._ask("fault", pid, vaddr, wanted)
            elif command in (PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE):
                self._out["upstream"] += HEADER.pack(command, pages, vaddr, pid)
                self.upstream_queue.append(("close",))
            else:
                raise ValueError(f"the lazy-pages daemon sent command {command:#x}, which the relay does not know")

    def _answer_daemon(self) -> None:
        """Answer the daemon's requests in order, each with the pages here from its start on."""
        while self.daemon_queue:
            pid, vaddr, pages = self.daemon_queue[0]
            if (pid, vaddr) not in self.arrived and (pid, vaddr) not in self.kept:
                if (pid, vaddr) not in self.asked:      # given long ago: a repeated request
                    raise ValueError(f"the lazy-pages daemon asked again for {vaddr:#x} of pid {pid}")
                return
            # a new request takes the pages that arrived; a repeated one (its first page given
            # already) the pages kept: an answer never mixes the two, so no page is given twice
            repeat = (pid, vaddr) not in self.arrived
            if repeat and not self._repeat_due((pid, vaddr, pages)):
                return
            data = []
            while len(data) < pages:
                key = (pid, vaddr + len(data) * PAGE)
                if repeat and key in self.kept:
                    data.append(self.kept[key])
                elif not repeat and key in self.arrived:
                    self.kept[key] = self.arrived.pop(key)
                    self.given.add(key)
                    data.append(self.kept[key])
                else:
                    break
            count = len(data)
            while len(self.kept) * PAGE > KEPT_BYTES:
                self.kept.popitem(last=False)
            self._out["daemon"] += HEADER.pack(PS_IOV_ADD_F | PE_PRESENT << PS_CMD_BITS, count, vaddr, pid)
            self._out["daemon"] += b"".join(data)
            self.daemon_queue.popleft()
            self.last_answered = (pid, vaddr, pages)

    def _repeat_due(self, request: tuple[int, int, int]) -> bool:
        """May a repeated request be answered now?  The same one as the last answered waits
        (see REPEAT_FIRST_WAIT_S); ValueError when it has come back for REPEAT_GIVE_UP_S."""
        now = time.monotonic()
        if request != self.last_answered:
            self.repeat_due = self.repeat_wait = 0.0
            return True
        if not self.repeat_due:                  # just asked again: wait before answering
            if not self.repeat_wait:
                self.repeat_since, self.repeat_wait = now, REPEAT_FIRST_WAIT_S
            else:
                self.repeat_wait = min(2 * self.repeat_wait, REPEAT_LONGEST_WAIT_S)
            if now - self.repeat_since > REPEAT_GIVE_UP_S:
                pid, vaddr, pages = request
                raise ValueError(f"the lazy-pages daemon asked for {pages} pages at {vaddr:#x} of pid {pid} "
                                 f"again and again for {REPEAT_GIVE_UP_S:.0f} s (its copies into the process fail)")
            self.repeat_due = now + self.repeat_wait
        if now < self.repeat_due:
            return False
        self.repeat_due = 0.0
        return True


def serve_delta(base: BasePages, page_server: tuple[str, int], listener: socket.socket) -> dict:
    """The source's side of a post-copy after a pre-copy: on ``listener`` (the address the
    destination was given), CRIU's page server for the one connection the destination's
    relay opens, each range fetched from CRIU (``page_server``, on loopback) and answered
    with ``PS_IOV_DELTA``.  Everything else goes through as it came, so a close ends the
    post-copy, an unknown command makes CRIU fail and a connection that ends early is reset
    (CRIU's processes run on here then).  Returns what crossed."""
    sent = {"pages": 0, "changed_pages": 0, "bytes": 0, "closed": False}
    destination, _ = listener.accept()
    listener.close()
    criu = socket.create_connection(page_server, timeout=CONNECT_TIMEOUT_S)
    criu.settimeout(None)
    criu.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    destination.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            header = _read(destination, HEADER.size)
            if header is None:
                break
            command, _, _, _ = HEADER.unpack(header)
            criu.sendall(header)
            if command & ((1 << PS_CMD_BITS) - 1) == PS_IOV_GET:
                answer = _read(criu, HEADER.size)
                if answer is None:
                    raise ConnectionError("CRIU's page server closed the connection")
                _, pages, vaddr, pid = HEADER.unpack(answer)
                data = _read(criu, pages * PAGE) if pages else b""
                if data is None:
                    raise ConnectionError("CRIU's page server closed the connection mid-answer")
                body = base.changes(pid, vaddr, data)
                destination.sendall(HEADER.pack(PS_IOV_DELTA, pages, vaddr, pid) + body)
                sent["pages"] += pages
                sent["changed_pages"] += delta_size(body[:(pages + 7) // 8]) // PAGE
                sent["bytes"] += HEADER.size + len(body)
            elif command in (PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE):
                status = _read(criu, 4)
                if status is not None:
                    destination.sendall(status)
                    sent["closed"] = True
                    criu.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
                break
            else:
                break                       # CRIU fails on what it does not know: passed on, that is all
    finally:
        criu.close()
        destination.close()
    return sent


def _read(sock: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or None if the peer closed first."""
    data = sock.recv(size, socket.MSG_WAITALL) if size else b""
    return data if len(data) == size else None


def main(argv: list[str] | None = None) -> int:
    """The relay, or the source's side of a post-copy after a pre-copy, as a process of its own,
    which ``LazyPagesDaemon`` or ``LazyCheckpoint`` starts with its listening socket made and
    inherited: like CRIU's processes it outlives an agent killed while pages still come, so the
    post-copy still ends.  The relay reads lines on stdin: ``restored`` (pre-page from now on),
    ``stop`` (give up); their end is ignored.  The source's side prints what crossed (JSON)."""
    parser = argparse.ArgumentParser(prog="python -m testbed.containers.prepaging")
    roles = parser.add_subparsers(dest="role", required=True)
    relay_args = roles.add_parser("relay", help="at the destination, between CRIU's lazy-pages daemon and the source")
    relay_args.add_argument("images", type=Path,
                            help="the pagemaps of the checkpoint being restored (deleted once read)")
    relay_args.add_argument("window", type=int, help="bytes of requests in flight at most")
    relay_args.add_argument("--base", type=Path,
                            help="the pre-copied checkpoint (deleted once mapped; the source runs 'source')")
    relay_args.add_argument("--upstream-fd", type=int,
                            help="a connection to the page server, opened already and inherited")
    source_args = roles.add_parser("source", help="at the source, in front of CRIU's page server")
    source_args.add_argument("base", type=Path, help="the pre-copied checkpoint, as the destination holds it")
    for role in (relay_args, source_args):
        role.add_argument("address", help="the page server to reach")
        role.add_argument("port", type=int)
        role.add_argument("listener_fd", type=int, help="a listening socket, inherited")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.listener_fd)
    try:
        base = BasePages(args.base) if args.base is not None else None
        if args.role == "relay":
            upstream = socket.socket(fileno=args.upstream_fd) if args.upstream_fd is not None else None
            relay = PrepagingRelay(args.images, (args.address, args.port), args.window, listener, base, upstream)
    except (OSError, ValueError) as error:
        print(f"the checkpoint cannot be read: {error}", file=sys.stderr)
        if args.role == "source":           # CRIU waits for a connection: its processes run on here
            with contextlib.suppress(OSError), socket.create_connection((args.address, args.port), 5) as criu:
                criu.sendall(GIVE_UP)
        return 2
    if args.role == "relay":                # its own links (LazyPagesDaemon): read, or mapped, now
        shutil.rmtree(args.images, ignore_errors=True)
        if args.base is not None:
            shutil.rmtree(args.base, ignore_errors=True)
    if args.role == "source":
        try:
            sent = serve_delta(base, (args.address, args.port), listener)
        except (OSError, ValueError) as error:
            print(f"{type(error).__name__}: {error}", file=sys.stderr)
            return 1
        print(json.dumps(sent), flush=True)
        return 0 if sent["closed"] else 1

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "restored":
                relay.restored()
            elif line.strip() == "stop":
                relay.stop()

    threading.Thread(target=commands, daemon=True, name="commands").start()
    relay.wait()
    if relay.error:
        print(relay.error, file=sys.stderr)
    return 0 if relay.closed_cleanly else 1


if __name__ == "__main__":
    sys.exit(main())
