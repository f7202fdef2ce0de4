"""The offloading client's recovery on loopback: a service that comes back behind a
slow shared link (the radio) must be reached, not buried under copies of the task."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

from testbed import protocol
from testbed.mu.offloading import STALLED_UPLOAD_S, OffloadingClient, Workload, _Attempt, _round_trip

IMAGE = bytes(range(256)) * 640          # 160 kB, the size of a test photo
LINK_BYTES_PER_S = 1_600_000             # 100 ms per task upload when alone on the link


class SharedLink:
    """One rate for all connections, as the users of one radio share its air time."""

    def __init__(self, rate: float):
        self.rate = rate
        self.lock = threading.Lock()
        self.free_at = time.monotonic()

    def carry(self, nbytes: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.free_at = max(now, self.free_at) + nbytes / self.rate
            done = self.free_at
        time.sleep(max(0.0, done - now))


class SlowService:
    """Answers each task once its frame has crossed the shared link; counts how many
    copies of the task were crossing it at the same time."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # the link, not a buffer, sets the pace
        self.listener.bind(("127.0.0.1", 0))
        self.endpoint = self.listener.getsockname()
        self.link = SharedLink(LINK_BYTES_PER_S)
        self.lock = threading.Lock()
        self.crossing = 0
        self.most_crossing = 0

    def open(self) -> None:
        """Start listening (before this, every connection is refused: the service is down)."""
        self.listener.listen(256)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                header = self._receive(conn)
                if header is not None:
                    conn.sendall(protocol.encode({"id": header["id"], "ok": True, "counter": header["id"] + 1,
                                                  "proc_ms": 0.0}))
            except OSError:
                pass

    def _receive(self, conn: socket.socket) -> dict | None:
        """The request's header once its whole frame has crossed the link (None if cut off)."""
        received = bytearray()
        try:
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                if not received:
                    self._count_crossing(+1)
                self.link.carry(len(chunk))
                received += chunk
                if len(received) >= protocol.PREFIX.size:
                    _, hlen, plen = protocol.PREFIX.unpack_from(received)
                    if len(received) >= protocol.PREFIX.size + hlen + plen:
                        return json.loads(bytes(received[protocol.PREFIX.size:protocol.PREFIX.size + hlen]))
        finally:
            if received:
                self._count_crossing(-1)

    def _count_crossing(self, change: int) -> None:
        with self.lock:
            self.crossing += change
            self.most_crossing = max(self.most_crossing, self.crossing)

    def close(self) -> None:
        self.listener.close()


def test_recovery_sends_one_copy_at_a_time_and_reaches_a_service_behind_a_slow_link(tmp_path):
    service = SlowService()
    client = OffloadingClient("mu", "detect", Workload([IMAGE]), tmp_path / "requests.jsonl", min_timeout=0.5)
    client.set_endpoints(current=service.endpoint)
    client.start()
    try:
        time.sleep(0.3)                     # down: every probe refused
        assert client.stats["ok"] == 0 and client.stats["failed"] > 5
        service.open()
        back = time.monotonic()
        while client.stats["ok"] == 0 and time.monotonic() - back < 1.5:
            time.sleep(0.005)               # the client, not the service, says when it is served
        recovered_after = time.monotonic() - back
    finally:
        client.stop()
        client.join(5)
        service.close()
    assert client.stats["ok"] >= 1, (
        f"no answer reached the client within 1.5 s; up to {service.most_crossing} copies shared the link")
    # a copy may start beside one that stalled (> STALLED_UPLOAD_S without progress), no more
    assert service.most_crossing <= 2, service.most_crossing
    assert recovered_after < 0.6, recovered_after


class Counter:
    """A tiny service on loopback answering every task with the next count."""

    def __init__(self, delay: float = 0.0, first_delay: float | None = None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = self.listener.getsockname()
        self.delay = delay          # seconds before each answer: a server far away
        self.first_delay = delay if first_delay is None else first_delay   # before a connection's first:
        self.count = 0              # a new connection's slow start over a long path
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            delay = self.first_delay
            while True:
                try:
                    header, _ = protocol.read_frame(conn)
                except (OSError, protocol.ConnectionClosed, protocol.ProtocolError):
                    return
                time.sleep(delay)
                delay = self.delay
                self.count += 1
                try:
                    conn.sendall(protocol.encode({"id": header["id"], "ok": True, "counter": self.count}, b""))
                except OSError:          # a copy of the task the client no longer needs: reset
                    return

    def close(self):
        """Stop listening now (a bare close waits for the thread blocked in accept)."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def test_a_stale_controller_reply_does_not_send_the_client_back(tmp_path):
    """After the client found the service at its pending endpoint, a reply the controller built
    before the move (older version) must not send it back to the old endpoint."""
    new = Counter()
    with socket.socket() as gone:                         # the service has left the old server:
        gone.bind(("127.0.0.1", 0))                       # nothing listens on its port any more
        old_endpoint = gone.getsockname()
    client = OffloadingClient("mu", "svc", Workload([b"x"]), tmp_path / "requests.jsonl", min_timeout=0.5)
    client.set_endpoints(current=old_endpoint, pending=[new.endpoint], version=4)
    client.start()
    try:
        deadline = time.monotonic() + 5
        while client.endpoints()["current"] != tuple(new.endpoint) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.endpoints()["current"] == tuple(new.endpoint)
        client.set_endpoints(current=old_endpoint, pending=[new.endpoint], version=4)     # the stale reply
        assert client.endpoints()["current"] == tuple(new.endpoint)
        client.set_endpoints(current=new.endpoint, pending=[], version=5)                 # the controller's news
        assert client.endpoints() == {"current": tuple(new.endpoint), "pending": []}
        client.set_endpoints(current=old_endpoint, version=6)                             # newer: obeyed
        assert client.endpoints()["current"] == tuple(old_endpoint)
    finally:
        client.stop()
        client.join(timeout=5)
        new.close()


def test_a_service_moved_far_away_is_reached_though_it_answers_slower_than_the_old_one_timed_out(tmp_path):
    """Minutes at an edge server (answers in a millisecond: a 0.5 s timeout), then the service
    moves to the cloud, whose answers take 0.7 s.  Its endpoint's tasks are given the time of an
    endpoint not yet measured, not the edge's: the outage ends with the first answer, it does
    not last until the service moves again."""
    edge, cloud = Counter(), Counter(delay=0.7)
    client = OffloadingClient("mu", "svc", Workload([b"x"]), tmp_path / "requests.jsonl", min_timeout=0.5)
    client.set_endpoints(current=edge.endpoint, version=1)
    client.start()
    try:
        deadline = time.monotonic() + 5
        while edge.count < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert edge.count >= 50
        moved = time.monotonic()
        client.set_endpoints(pending=[cloud.endpoint], version=2)
        edge.close()                                         # the service stops at the edge...
        client.interrupt("migration")                        # ...and its connection goes with it
        while client.endpoints()["current"] != tuple(cloud.endpoint) and time.monotonic() < moved + 5:
            time.sleep(0.01)
        assert client.endpoints()["current"] == tuple(cloud.endpoint), "the cloud's answers were never awaited"
        assert time.monotonic() - moved < 1.5
        assert client.e2e_by_endpoint[tuple(cloud.endpoint)] >= 0.7 > client.e2e_by_endpoint[tuple(edge.endpoint)]
        with pytest.deprecated_call():                       # the old name: the current endpoint's
            assert client.ewma_e2e == client.e2e_by_endpoint[tuple(cloud.endpoint)]
    finally:
        client.stop()
        client.join(timeout=5)
        cloud.close()


def _answers(client: OffloadingClient, count: int, within: float) -> bool:
    """Whether the client has ``count`` answers within ``within`` seconds."""
    deadline = time.monotonic() + within
    while client.stats["ok"] < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return client.stats["ok"] >= count


def _recovery(client: OffloadingClient, log) -> tuple[bool, float, list[dict]]:
    """Drop the client's connection (a handover), wait up to 10 s for the next answer: whether
    it came, how long that took and the attempts that failed meanwhile."""
    since, cut = client.stats["ok"], time.monotonic()
    client.interrupt()
    answered = _answers(client, since + 1, within=10)
    waited = time.monotonic() - cut
    return answered, waited, [r for r in _failed(log) if r["sent"] >= time.time() - waited - 0.05]


def _failed(log) -> list[dict]:
    """The failed attempts in a client's request log."""
    return [row for row in map(json.loads, log.read_text().splitlines()) if not row["ok"]]


@contextlib.contextmanager
def _client_of(service: Counter, log):
    """A client offloading to ``service`` from the start, stopped (and the service closed) after."""
    client = OffloadingClient("mu", "svc", Workload([b"x"]), log, min_timeout=0.5)
    client.set_endpoints(current=service.endpoint, version=1)
    client.start()
    try:
        yield client, service
    finally:
        client.stop()
        client.join(timeout=5)
        service.close()


def test_a_new_connection_slower_than_the_timeout_still_gets_its_answer_and_the_next_one_in_time(tmp_path):
    """Warm tasks take 0.1 s (a 0.6 s timeout), a task on a new connection 1 s: the cloud's
    slow start after a handover.  Timeouts fitted to warm tasks alone would give up on every
    attempt after a handover, for as long as the service stays there.  The first recovery may
    lose a generation of attempts (then the timeout doubles); the next, knowing what a new
    connection takes there, loses none."""
    log = tmp_path / "requests.jsonl"
    with _client_of(Counter(delay=0.1, first_delay=1.0), log) as (client, cloud):
        assert _answers(client, 12, within=10)                              # past its first answer
        assert client._timeout(tuple(cloud.endpoint)) < 1.0, "the warm tasks set a timeout below a new connection's"
        answered, first, failed = _recovery(client, log)
        assert answered, f"no answer in {first:.1f} s after the connection dropped: " \
            f"{len(failed)} attempts failed ({sorted({r['error'] for r in failed})})"
        assert first < 3.5, first
        assert _answers(client, client.stats["ok"] + 5, within=10)          # warm tasks again
        answered, second, failed = _recovery(client, log)
        assert answered
        assert not [r for r in failed if r["error"] == "timeout"], "the second recovery still timed out"
        assert second < 1.5, second


def test_a_first_task_at_the_cloud_is_waited_for_not_timed_out(tmp_path):
    """The trial's first task goes to an endpoint with nothing measured yet, on a new
    connection: to the cloud an image's upload slow-starts over 300 ms round trips (1.5-2.4 s).
    Its timeout must outlast that, or the trial starts on an outage of a timed-out task."""
    log = tmp_path / "requests.jsonl"
    with _client_of(Counter(delay=0.01, first_delay=2.5), log) as (client, _):
        assert _answers(client, 3, within=10)
        failed = _failed(log)
        assert not failed, f"the first task failed {len(failed)} times ({sorted({r['error'] for r in failed})})"


def test_an_upload_awaiting_its_acknowledgements_a_round_trip_away_is_not_stalled():
    """In slow start a copy's bytes are acknowledged once a round trip (300 ms to the cloud): it is
    still on its way until two round trips and ``STALLED_UPLOAD_S`` pass without progress, so a
    second copy does not start beside it and share the radio link."""
    listener = socket.create_server(("127.0.0.1", 0))
    attempt = _Attempt(listener.getsockname(), b"x" * 300_000, time.time(), time.monotonic() + 10)
    try:
        time.sleep(0.05)                                   # connected (loopback)
        attempt.connected, attempt.progressed = True, 100.0
        attempt.rtt = _round_trip(attempt.sock)
        assert 0 < attempt.rtt < 0.05                      # loopback: TCP measured it on connecting
        assert attempt.uploading(100.0 + STALLED_UPLOAD_S / 2)
        assert not attempt.uploading(100.0 + STALLED_UPLOAD_S + 2 * attempt.rtt + 0.01)
        attempt.rtt = 0.3                                  # the cloud's round trip
        assert attempt.uploading(100.0 + 0.5)              # awaiting the next acknowledgements
        assert not attempt.uploading(100.0 + STALLED_UPLOAD_S + 0.6 + 0.01)
    finally:
        attempt.close()
        listener.close()
    with socket.socket() as unconnected:
        assert _round_trip(unconnected) == 0.0             # not connected: nothing measured
