"""Userspace delay line: the propagation delay of a link on kernels without sch_netem.

It runs inside a link's private "wire" namespace, between the inner ends of two
veth pairs.  Every frame that arrives on one side is stamped with the kernel's
receive time, held for the configured one-way delay (plus jitter) and then
written to the other side, so pings and TCP alike cross exactly the same path.
Frames leave in arrival order, as on a wire (jitter never reorders, like netem
with a rate).  Bandwidth is not shaped here: htb on the outer veth ends does it.

Only the standard library is used, because this program runs once per link and
must start fast.  Run it as ``python -m testbed.net.wire --help``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SO_TIMESTAMPNS = 35
MAX_FRAME = 65536
_TIMESPEC = struct.Struct("qq")


class Stop(Exception):
    """Raised by the signal handler to leave the forwarding loop."""


class Direction:
    """One direction of the wire: frames read from ``rx`` are written to ``tx``."""

    def __init__(self, name, rx, tx, delay_s, jitter_s, loss, rng):
        self.name = name
        self.rx = rx
        self.tx = tx
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.loss = loss
        self.rng = rng
        self.queue = collections.deque()
        self.last_due = 0.0
        self.frames = 0
        self.bytes = 0
        self.dropped_loss = 0
        self.dropped_tx = 0

    def due_time(self, arrival):
        due = arrival + self.delay_s
        if self.jitter_s:
            due += self.rng.uniform(-self.jitter_s, self.jitter_s)
        # A wire keeps order: never send before the frame ahead of us.
        if due < self.last_due:
            due = self.last_due
        self.last_due = due
        return due

    def receive(self, clock_offset):
        """Drain every frame waiting on the rx socket into the queue."""
        rx = self.rx
        while True:
            try:
                data, ancdata, _flags, _addr = rx.recvmsg(MAX_FRAME, 64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            arrival = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(payload)
                    arrival = sec + nsec * 1e-9 - clock_offset
            if arrival is None:
                arrival = time.monotonic()
            if self.loss and self.rng.random() < self.loss:
                self.dropped_loss += 1
                continue
            self.queue.append((self.due_time(arrival), data))

    def transmit(self, now):
        """Send every frame whose time has come; return when the next one is due."""
        queue = self.queue
        tx = self.tx
        while queue:
            due, data = queue[0]
            if due > now:
                return due
            queue.popleft()
            try:
                tx.send(data)
                self.frames += 1
                self.bytes += len(data)
            except OSError:
                # ENOBUFS and friends: the frame is lost, as on a congested wire.
                self.dropped_tx += 1
        return None

    def stats(self):
        return {
            "direction": self.name,
            "delay_ms": self.delay_s * 1e3,
            "jitter_ms": self.jitter_s * 1e3,
            "loss": self.loss,
            "frames": self.frames,
            "bytes": self.bytes,
            "dropped_loss": self.dropped_loss,
            "dropped_tx": self.dropped_tx,
            "queued": len(self.queue),
        }


def open_port(ifname):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def realtime_minus_monotonic():
    """Offset that turns the kernel's CLOCK_REALTIME stamps into monotonic time."""
    best = None
    for _ in range(5):
        m0 = time.monotonic()
        r = time.time()
        m1 = time.monotonic()
        if best is None or (m1 - m0) < best[0]:
            best = (m1 - m0, r - (m0 + m1) / 2)
    return best[1]


def run(args):
    rng = random.Random(args.seed)
    port_a = open_port(args.a)
    port_b = open_port(args.b)
    a2b = Direction("a->b", port_a, port_b, args.delay_ab / 1e3, args.jitter_ab / 1e3, args.loss_ab / 100.0, rng)
    b2a = Direction("b->a", port_b, port_a, args.delay_ba / 1e3, args.jitter_ba / 1e3, args.loss_ba / 100.0, rng)
    by_fd = {port_a.fileno(): a2b, port_b.fileno(): b2a}
    readers = [port_a, port_b]

    def request_stop(_signum, _frame):
        raise Stop

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    offset = realtime_minus_monotonic()
    next_resync = time.monotonic() + 1.0
    if args.ready_file:
        with open(args.ready_file, "w") as handle:
            handle.write(str(os.getpid()))
    try:
        while True:
            now = time.monotonic()
            if now >= next_resync:
                offset = realtime_minus_monotonic()
                next_resync = now + 1.0
            due_a = a2b.transmit(now)
            due_b = b2a.transmit(now)
            wake = min(d for d in (due_a, due_b, next_resync) if d is not None)
            ready, _, _ = select.select(readers, [], [], max(0.0, wake - time.monotonic()))
            for sock in ready:
                by_fd[sock.fileno()].receive(offset)
    except Stop:
        pass
    if args.stats_file:
        with open(args.stats_file, "w") as handle:
            json.dump([a2b.stats(), b2a.stats()], handle)
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="interface of side a (in this namespace)")
    parser.add_argument("--b", required=True, help="interface of side b (in this namespace)")
    parser.add_argument("--delay-ab", type=float, default=0.0, help="one-way delay a->b in ms")
    parser.add_argument("--delay-ba", type=float, default=0.0, help="one-way delay b->a in ms")
    parser.add_argument("--jitter-ab", type=float, default=0.0, help="uniform jitter a->b in ms")
    parser.add_argument("--jitter-ba", type=float, default=0.0, help="uniform jitter b->a in ms")
    parser.add_argument("--loss-ab", type=float, default=0.0, help="loss a->b in percent")
    parser.add_argument("--loss-ba", type=float, default=0.0, help="loss b->a in percent")
    parser.add_argument("--seed", type=int, default=0, help="seed of jitter and loss")
    parser.add_argument("--ready-file", help="write our pid here once the sockets are open")
    parser.add_argument("--stats-file", help="write per-direction counters here on exit")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
