"""Send requests to a service from inside the emulated network.

    ip netns exec tb-mu .venv/bin/python -m testbed.query 172.16.1.2 --op task --file dog.jpg

Prints one JSON reply per line (embeddings shortened unless --full).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from testbed.client import RequestFailed, ServiceClient


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--op", default="task")
    parser.add_argument("--file", action="append", default=[], help="payload file (repeatable: one request each)")
    parser.add_argument("--extra", default="{}", help="JSON fields added to the request header")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--client", default="query")
    parser.add_argument("--first-id", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    client = ServiceClient(args.client, timeout=args.timeout)
    payloads = [Path(f).read_bytes() for f in args.file] or [b"x"]
    rid = args.first_id
    status = 0
    for _ in range(args.repeat):
        for payload in payloads:
            try:
                reply = client.request((args.host, args.port), rid, op=args.op, payload=payload,
                                       extra=json.loads(args.extra))
                header = reply.header
                if not args.full:
                    for face in (header.get("result") or {}).get("faces", []):
                        face["embedding"] = face["embedding"][:4] + ["..."]
                print(json.dumps({**header, "e2e_ms": round(reply.e2e_ms, 3)}), flush=True)
            except RequestFailed as exc:
                print(json.dumps({"id": rid, "ok": False, "failure": str(exc)}), flush=True)
                status = 1
            rid += 1
    client.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
