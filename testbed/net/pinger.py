"""ICMP echo with microsecond resolution (iputils ping prints whole ms above 100 ms).

Run inside a node: ``python -m testbed.net.pinger ADDRESS --count N --interval S``;
prints one JSON object ``{"sent", "received", "rtts_ms": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, count: int, interval: float, timeout: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    next_send = time.monotonic()
    seq = 0
    last_deadline = None
    while seq < count or (last_deadline is not None and time.monotonic() < last_deadline
                          and len(rtts) < count):
        now = time.monotonic()
        if seq < count and now >= next_send:
            payload = struct.pack("!d", now) + b"mec-testbed" * 4
            header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload
            sock.sendto(packet, (address, 0))
            sent_at[seq] = time.monotonic()
            seq += 1
            next_send += interval
            if seq == count:
                last_deadline = time.monotonic() + timeout
        wait = max(0.0, (next_send if seq < count else last_deadline) - time.monotonic())
        ready, _, _ = select.select([sock], [], [], wait)
        if ready:
            data, _ = sock.recvfrom(2048)
            received = time.monotonic()
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == ECHO_REPLY and rid == ident and rseq in sent_at and rseq not in rtts:
                rtts[rseq] = (received - sent_at[rseq]) * 1e3
    return {"sent": count, "received": len(rtts), "rtts_ms": [round(rtts[s], 4) for s in sorted(rtts)]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(ping(args.address, args.count, args.interval, args.timeout)))


if __name__ == "__main__":
    main()
