"""Send malformed requests to a service and check each gets an error reply.

Run inside a node of the emulated network:
    python tests/helpers/malformed.py HOST PORT COUNT [--no-image-check]
Prints a JSON summary.  Categories (COUNT/4 each): random bytes, truncated
frames, oversize frames, and well-framed requests the service must refuse
(not an image, or a header that is not JSON for services that take any payload).
"""

import json
import os
import random
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from testbed import protocol  # noqa: E402

PREFIX = protocol.PREFIX


def read_reply(sock):
    try:
        header, _ = protocol.read_frame(sock)
        return header
    except (protocol.ConnectionClosed, protocol.ProtocolError, OSError):
        return None


def one_shot(address, data, half_close=False):
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_reply(sock)


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    image_service = "--no-image-check" not in sys.argv
    address = (host, port)
    rng = random.Random(7)
    per = count // 4
    codes = {}
    missing = []

    def note(kind, reply):
        if reply is None or reply.get("ok") is not False:
            missing.append({"kind": kind, "reply": reply})
        else:
            codes[reply["error"]["code"]] = codes.get(reply["error"]["code"], 0) + 1

    for _ in range(per):  # random bytes (never starting with the magic)
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(12, 200)))
        if data.startswith(b"MEC1"):
            data = b"X" + data
        note("random", one_shot(address, data))
    for _ in range(per):  # truncated: a valid prefix, then less than announced
        body = json.dumps({"id": 1, "op": "task"}).encode()
        frame = PREFIX.pack(protocol.MAGIC, len(body), 5000) + body + b"y" * rng.randint(0, 4000)
        note("truncated", one_shot(address, frame, half_close=True))
    for _ in range(per):  # oversize payload announced
        body = json.dumps({"id": 1, "op": "task"}).encode()
        frame = PREFIX.pack(protocol.MAGIC, len(body), protocol.MAX_PAYLOAD + rng.randint(1, 10**6)) + body
        note("oversize", one_shot(address, frame))
    with socket.create_connection(address, timeout=30) as sock:  # refused on one connection
        for i in range(count - 3 * per):
            if image_service:
                frame = protocol.encode({"id": 10**6 + i, "op": "task", "client": "fuzz"},
                                        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000))))
            else:
                body = b"{not json " + str(i).encode()
                frame = PREFIX.pack(protocol.MAGIC, len(body), 0) + body
            sock.sendall(frame)
            note("refused", read_reply(sock))
    print(json.dumps({"sent": count, "error_replies": sum(codes.values()), "codes": codes,
                      "missing": missing[:5], "missing_count": len(missing)}))


if __name__ == "__main__":
    main()
