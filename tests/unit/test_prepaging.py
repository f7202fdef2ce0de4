"""The post-copy pre-paging relay's own logic: pagemap parsing and the page-server protocol.

The source here is a small page server in a thread that speaks CRIU's protocol as
``criu/page-xfer.c`` does (answers in order, at most to the end of a range, a request
it cannot serve or an unknown command ends it with a failure); the real CRIU path is
exercised by the post-copy migration tests.
"""

import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from testbed.containers import criu_images, prepaging
from testbed.containers.lazy import EarlyConnection
from testbed.containers.prepaging import (GIVE_UP, HEADER, PAGE, PE_LAZY, PE_PRESENT, PS_IOV_CLOSE, PS_IOV_GET,
                                          BasePages, PrepagingRelay, lazy_ranges, serve_delta)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def message(**fields: int) -> bytes:
    numbers = {"pages_id": 1, "vaddr": 1, "compat_nr_pages": 2, "flags": 4, "nr_pages": 5}
    body = b"".join(varint(numbers[name] << 3) + varint(value) for name, value in fields.items())
    return struct.pack("<I", len(body)) + body


def write_pagemap(images, pid: int, entries: list[tuple[int, int, int]]) -> None:
    data = struct.pack("<II", 0x54564319, 0x56084025) + message(pages_id=pid)
    for vaddr, pages, flags in entries:
        data += message(vaddr=vaddr, compat_nr_pages=pages, flags=flags)
    (images / f"pagemap-{pid}.img").write_bytes(data)


def write_checkpoint(images, pid: int, entries: list[tuple[int, int]], content) -> None:
    """A full checkpoint's memory of ``pid``: its pagemap and its pages file."""
    images.mkdir(exist_ok=True)
    write_pagemap(images, pid, [(vaddr, pages, PE_PRESENT) for vaddr, pages in entries])
    (images / f"pages-{pid}.img").write_bytes(b"".join(content(pid, vaddr + i * PAGE)
                                                        for vaddr, pages in entries for i in range(pages)))


def page(pid: int, vaddr: int) -> bytes:
    return struct.pack("<QQ", pid, vaddr) * (PAGE // 16)


class PageServer:
    """CRIU's lazy page server, as far as the relay sees it (``content``: the page at an address)."""

    def __init__(self, ranges: dict[int, list[tuple[int, int]]], content=page):
        self.ranges, self.requests, self.status, self.content = ranges, [], None, content
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        connection, _ = self.listener.accept()
        self.listener.close()
        with connection:
            while True:
                try:
                    header = connection.recv(HEADER.size, socket.MSG_WAITALL)
                except ConnectionResetError:
                    self.status = "reset"               # CRIU fails: its processes run on
                    return
                if len(header) < HEADER.size:
                    self.status = "eof"
                    return
                command, pages, vaddr, pid = HEADER.unpack(header)
                self.requests.append((command, pid, vaddr, pages))
                if command == PS_IOV_CLOSE:
                    connection.sendall(struct.pack("<i", 0))
                    self.status = "closed"
                    return
                if command != PS_IOV_GET:
                    self.status = "failed"
                    return
                end = next((start + count * PAGE for start, count in self.ranges.get(pid, [])
                            if start <= vaddr < start + count * PAGE), None)
                if end is None:
                    self.status = "failed"          # "no iovs found, zero pages"
                    return
                sent = min(pages, (end - vaddr) // PAGE)
                connection.sendall(HEADER.pack(6 | PE_PRESENT << 16, sent, vaddr, pid) +
                                   b"".join(self.content(pid, vaddr + i * PAGE) for i in range(sent)))


def ask(daemon: socket.socket, pid: int, vaddr: int, pages: int) -> tuple[int, bytes]:
    daemon.sendall(HEADER.pack(PS_IOV_GET, pages, vaddr, pid))
    _, count, answered_vaddr, answered_pid = HEADER.unpack(daemon.recv(HEADER.size, socket.MSG_WAITALL))
    assert (answered_pid, answered_vaddr) == (pid, vaddr)
    return count, daemon.recv(count * PAGE, socket.MSG_WAITALL)


@pytest.fixture
def images(tmp_path):
    write_pagemap(tmp_path, 1, [(0x1000, 3, PE_PRESENT), (0x10000, 100, PE_LAZY), (0x80000, 5, PE_LAZY)])
    write_pagemap(tmp_path, 7, [(0x20000, 2, PE_LAZY)])
    (tmp_path / "pagemap-shmem-42.img").write_bytes(b"not a task's pagemap")
    return tmp_path


def test_lazy_ranges_are_the_lazy_entries_of_each_task(images):
    assert lazy_ranges(images) == [(1, 0x10000, 100), (1, 0x80000, 5), (7, 0x20000, 2)]


def test_a_truncated_pagemap_is_named_with_the_byte(images):
    data = (images / "pagemap-7.img").read_bytes()
    (images / "pagemap-7.img").write_bytes(data[:-3])
    with pytest.raises(ValueError, match=r"pagemap-7.img: entry at byte \d+ runs past the end"):
        lazy_ranges(images)


def nested(number: int, body: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(body)) + body


def write_core(images, tid: int, rseq_pointer: int) -> None:
    """A thread's core image: core_entry {mtype = 1, thread_core = 5 {rseq_entry = 15 {rseq_abi_pointer = 1}}}."""
    rseq = varint(1 << 3) + varint(rseq_pointer) + varint(2 << 3) + varint(32)
    write_core_entry(images, tid, varint(1 << 3) + varint(1) + nested(5, varint(1 << 3) + varint(7) + nested(15, rseq)))


def write_core_entry(images, tid: int, core: bytes) -> None:
    """``core-<tid>.img``: the magics, then ``core`` as its one entry."""
    (images / f"core-{tid}.img").write_bytes(struct.pack("<II", 0x54564319, 0x55053847)
                                             + struct.pack("<I", len(core)) + core)


def test_the_pages_the_restore_touches_are_asked_for_at_once(images):
    write_core(images, 1, 0x10000 + 42 * PAGE + 0x960)      # in a lazy range of pid 1
    write_core(images, 3, 0x80000 + 4 * PAGE + 0xfe0)
    write_core(images, 5, 0x1000 + 0x20)                    # restored whole: nothing to ask
    assert criu_images.rseq_pages(images) == {0x10000 + 42 * PAGE, 0x80000 + 4 * PAGE, 0x1000}
    source = PageServer({1: [(0x10000, 100), (0x80000, 5)], 7: [(0x20000, 2)]})
    relay = PrepagingRelay(images, source.address, max_window=8 * PAGE)
    with socket.create_connection(relay.address) as daemon:
        deadline = time.monotonic() + 10
        while len(source.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(source.requests) == [(PS_IOV_GET, 1, 0x10000 + 42 * PAGE, 1), (PS_IOV_GET, 1, 0x80000 + 4 * PAGE, 1)]
        assert ask(daemon, 1, 0x80000 + 4 * PAGE, 1) == (1, page(1, 0x80000 + 4 * PAGE))
        assert len(source.requests) == 2                    # the fault was answered from what came ahead
    relay.stop()


def test_a_core_image_cut_inside_a_nested_message_is_named(images):
    write_core(images, 1, 0x10000)
    data = (images / "core-1.img").read_bytes()         # the entry one byte shorter, its length to match
    (images / "core-1.img").write_bytes(data[:8] + struct.pack("<I", len(data) - 13) + data[12:-1])
    with pytest.raises(ValueError, match=r"core-1.img: field 5 runs past its entry at byte \d+"):
        criu_images.rseq_pages(images)


def test_an_error_inside_a_nested_message_names_the_file_s_byte(images):
    write_core_entry(images, 1, varint(1 << 3) + varint(1)
                     + nested(5, varint(1 << 3) + varint(7) + nested(15, varint(1 << 3) + b"\x80")))
    # magics and length 12, mtype 2, thread_core's key and length 2, its thread id 2, rseq's key and
    # length 2: the rseq message starts at byte 20, and its pointer's varint stops short at byte 22
    with pytest.raises(ValueError, match=r"core-1.img: varint runs past its entry at byte 22$"):
        criu_images.rseq_pages(images)


def test_every_page_arrives_ahead_and_the_close_is_passed_on(images):
    # the source splits the first range in two, as two page-pipe buffers would
    source = PageServer({1: [(0x10000, 60), (0x10000 + 60 * PAGE, 40), (0x80000, 5)], 7: [(0x20000, 2)]})
    relay = PrepagingRelay(images, source.address, max_window=8 * PAGE)
    with socket.create_connection(relay.address) as daemon:
        count, data = ask(daemon, 1, 0x10000 + 70 * PAGE, 1)      # a fault, before the restore ends
        assert count == 1 and data == page(1, 0x10000 + 70 * PAGE)
        relay.restored()
        deadline = time.monotonic() + 10
        while relay.prepaged + relay.fetched < 107 * PAGE and time.monotonic() < deadline:
            time.sleep(0.01)
        asked_before = len(source.requests)
        assert relay.prepaged == 106 * PAGE                      # each page crossed once
        count, data = ask(daemon, 1, 0x10000, 100)               # answered here, up to the page given already
        assert count == 70 and data == b"".join(page(1, 0x10000 + i * PAGE) for i in range(70))
        count, data = ask(daemon, 1, 0x10000, 100)               # asked again (CRIU does): what it was given
        assert count == 71 and data == b"".join(page(1, 0x10000 + i * PAGE) for i in range(71))
        assert ask(daemon, 7, 0x20000, 2)[0] == 2
        assert len(source.requests) == asked_before              # nothing more crossed
        daemon.sendall(HEADER.pack(PS_IOV_CLOSE, 0, 0, 0))
        assert struct.unpack("<i", daemon.recv(4, socket.MSG_WAITALL)) == (0,)
    relay.stop()
    source.thread.join(5)
    assert source.status == "closed" and relay.error is None
    assert max(pages for command, _, _, pages in source.requests if command == PS_IOV_GET) * PAGE <= 8 * PAGE


def test_a_request_asked_again_and_again_is_answered_slower_then_fails(images, monkeypatch):
    """CRIU's daemon asks again at once when its copy into the process fails (EAGAIN while the
    process changes its mappings); answered at once, the two would spin.  The relay waits longer
    each time, and gives up (the source resumes its processes) past REPEAT_GIVE_UP_S."""
    monkeypatch.setattr(prepaging, "REPEAT_GIVE_UP_S", 0.5)
    source = PageServer({1: [(0x10000, 100), (0x80000, 5)], 7: [(0x20000, 2)]})
    relay = PrepagingRelay(images, source.address, max_window=1 << 20)
    answers = []
    with socket.create_connection(relay.address) as daemon:
        daemon.settimeout(5)
        started = time.monotonic()
        while relay.error is None and time.monotonic() - started < 5:
            try:
                answers.append((time.monotonic(), ask(daemon, 1, 0x80000, 5)[0]))
            except (AssertionError, OSError, struct.error):
                break
    relay.stop()
    source.thread.join(5)
    assert answers[0][1] == 5 and all(count == 5 for _, count in answers)
    assert 3 <= len(answers) <= 20, len(answers)           # not thousands: 1, 2, 4 ... 100 ms apart
    assert answers[-1][0] - answers[-2][0] >= 0.05
    assert relay.error and "again and again" in relay.error
    assert source.status == "failed"                        # told to give up


def test_a_daemon_gone_before_its_close_makes_the_source_give_up(images):
    source = PageServer({1: [(0x10000, 100), (0x80000, 5)], 7: [(0x20000, 2)]})
    relay = PrepagingRelay(images, source.address, max_window=1 << 20)
    with socket.create_connection(relay.address) as daemon:
        assert ask(daemon, 1, 0x80000, 5)[0] == 5
    source.thread.join(5)
    relay.stop()
    assert source.status == "failed" and source.requests[-1][0] == struct.unpack("<I", GIVE_UP[:4])[0]
    assert relay.error and "daemon closed" in relay.error


def test_an_early_connection_is_taken_once_or_closed():
    with socket.create_server(("127.0.0.1", 0)) as source:
        early = EarlyConnection(source.getsockname())
        accepted, _ = source.accept()
        connection = early.take(5)
        assert connection.getpeername() == source.getsockname()
        assert early.take(0) is None                 # the page server takes one connection: one taker
        connection.close()
        accepted.close()
        unused = EarlyConnection(source.getsockname())
        accepted, _ = source.accept()
        unused.close()                                # never taken: the source sees it end
        accepted.settimeout(5)
        assert accepted.recv(1) == b""
        accepted.close()
    with socket.socket() as closed:                   # nothing listens: None, the relay tries itself
        closed.bind(("127.0.0.1", 0))
        assert EarlyConnection(closed.getsockname()).take(5) is None


def test_a_lost_source_ends_the_daemons_connection(images):
    source = PageServer({1: [(0x10000, 1)]})        # fails on the first page it does not hold
    relay = PrepagingRelay(images, source.address, max_window=1 << 20)
    with socket.create_connection(relay.address) as daemon:
        relay.restored()
        daemon.settimeout(5)
        assert daemon.recv(HEADER.size) == b""
    relay.stop()
    assert source.status == "failed" and "the upstream" in relay.error


@pytest.mark.parametrize("early", [False, True], ids=["relay-connects", "connection-inherited"])
def test_the_relay_process_outlives_its_parent_and_ends_the_post_copy(images, early):
    """Started as ``LazyPagesDaemon`` starts it; its parent's end (stdin closed, as when the
    agent is killed) leaves it serving, so the post-copy still ends cleanly.  ``early``: with
    the connection to the source made before (``EarlyConnection``): the relay uses it (the
    address it is given then leads nowhere; CRIU's page server takes one connection)."""
    source = PageServer({1: [(0x10000, 100), (0x80000, 5)], 7: [(0x20000, 2)]})
    upstream = EarlyConnection(source.address).take(5) if early else None
    page_server = ("127.0.0.1", 1) if early else source.address
    with socket.create_server(("127.0.0.1", 0)) as listener:
        inherited = [upstream.fileno()] if upstream else []
        relay = subprocess.Popen([sys.executable, "-m", "testbed.containers.prepaging", "relay", str(images),
                                  str(1 << 20), *[f"--upstream-fd={fd}" for fd in inherited],
                                  *map(str, page_server), str(listener.fileno())],
                                 pass_fds=(listener.fileno(), *inherited), stdin=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        address = listener.getsockname()
    if upstream is not None:
        upstream.close()
    try:
        relay.stdin.write(b"restored\n")
        relay.stdin.close()                                      # the parent is gone
        with socket.create_connection(address) as daemon:
            for pid, vaddr, pages in ((1, 0x10000, 100), (1, 0x80000, 5), (7, 0x20000, 2)):
                got = b""
                while len(got) < pages * PAGE:       # as CRIU's daemon, asks again for the rest
                    got += ask(daemon, pid, vaddr + len(got), pages - len(got) // PAGE)[1]
                assert got == b"".join(page(pid, vaddr + i * PAGE) for i in range(pages))
            daemon.sendall(HEADER.pack(PS_IOV_CLOSE, 0, 0, 0))
            assert struct.unpack("<i", daemon.recv(4, socket.MSG_WAITALL)) == (0,)
        assert relay.wait(10) == 0, relay.stderr.read()
    finally:
        relay.kill()
        relay.wait()
    source.thread.join(5)
    assert source.status == "closed"


# -- post-copy after a pre-copy: only the pages that changed cross ---------------------------
CHANGED = {(1, 0x10000 + 3 * PAGE), (1, 0x10000 + 50 * PAGE)}


def now(pid: int, vaddr: int) -> bytes:
    """The memory at the final checkpoint: two pages written since the pre-copy."""
    return b"new!" * (PAGE // 4) if (pid, vaddr) in CHANGED else page(pid, vaddr)


@pytest.fixture
def base(tmp_path):
    """The pre-copied checkpoint: the lazy ranges but 0x80000 (mapped after it), and a range
    no longer there."""
    write_checkpoint(tmp_path / "base", 1, [(0x4000, 2), (0x10000, 100)], page)
    write_checkpoint(tmp_path / "base", 7, [(0x20000, 2)], page)
    return tmp_path / "base"


def test_base_pages_are_found_by_address_and_a_short_pages_file_is_named(base):
    pages = BasePages(base)
    assert pages.page(1, 0x10000 + 7 * PAGE) == page(1, 0x10000 + 7 * PAGE)
    assert pages.page(1, 0x4000 + PAGE) == page(1, 0x4000 + PAGE)
    assert pages.page(1, 0x80000) is None and pages.page(3, 0x10000) is None
    data = b"".join(now(1, 0x10000 + i * PAGE) for i in range(60))
    body = pages.changes(1, 0x10000, data)
    assert len(body) == 8 + 2 * PAGE and int.from_bytes(body[:8], "little") == 1 << 3 | 1 << 50
    assert pages.rebuild(1, 0x10000, 60, body[:8], body[8:]) == data
    with pytest.raises(ValueError, match="left out page 0x80000"):
        pages.rebuild(1, 0x80000, 1, b"\x00", b"")
    (base / "pages-7.img").write_bytes(b"x" * PAGE)
    with pytest.raises(ValueError, match=r"pages-7.img: 4096 bytes, but pagemap-7.img puts 2 pages there"):
        BasePages(base)


def delta_source(base, criu) -> tuple[tuple, dict]:
    """``serve_delta`` in a thread: its address, and what it returns once done."""
    listener = socket.create_server(("127.0.0.1", 0))
    result = {}
    thread = threading.Thread(target=lambda: result.update(serve_delta(BasePages(base), criu.address, listener)),
                              daemon=True)
    thread.start()
    result["thread"] = thread
    return listener.getsockname(), result


def test_after_a_pre_copy_only_changed_and_new_pages_cross(images, base):
    criu = PageServer({1: [(0x10000, 60), (0x10000 + 60 * PAGE, 40), (0x80000, 5)], 7: [(0x20000, 2)]}, now)
    address, sent = delta_source(base, criu)
    relay = PrepagingRelay(images, address, max_window=1 << 20, base=BasePages(base))
    with socket.create_connection(relay.address) as daemon:
        relay.restored()
        for pid, vaddr, pages in ((1, 0x10000, 100), (1, 0x80000, 5), (7, 0x20000, 2)):
            got = b""
            while len(got) < pages * PAGE:
                got += ask(daemon, pid, vaddr + len(got), pages - len(got) // PAGE)[1]
            assert got == b"".join(now(pid, vaddr + i * PAGE) for i in range(pages))
        daemon.sendall(HEADER.pack(PS_IOV_CLOSE, 0, 0, 0))
        assert struct.unpack("<i", daemon.recv(4, socket.MSG_WAITALL)) == (0,)
    relay.stop()
    sent["thread"].join(5)
    criu.thread.join(5)
    assert criu.status == "closed" and relay.error is None and sent["closed"]
    assert sent["pages"] == 107 and sent["changed_pages"] == 2 + 5          # written, and mapped since
    assert relay.received == sent["bytes"] < 8 * PAGE
    assert relay.prepaged + relay.fetched == 107 * PAGE


def test_a_destination_gone_mid_post_copy_resets_criu_s_connection(base):
    """CRIU takes a connection that merely closes for the post-copy's end (and ends its
    processes): one that ends early must reach it as a reset, so they run on."""
    criu = PageServer({1: [(0x10000, 100)]}, now)
    address, sent = delta_source(base, criu)
    with socket.create_connection(address) as destination:
        destination.sendall(HEADER.pack(PS_IOV_GET, 4, 0x10000, 1))
        destination.recv(HEADER.size + 1 + PAGE, socket.MSG_WAITALL)
    sent["thread"].join(5)
    criu.thread.join(5)
    assert criu.status == "reset" and sent["closed"] is False and sent["changed_pages"] == 1
