"""Packet captures of a trial: what the wire saw, next to what the client logged.

One ``tcpdump`` per node asked for (the mobile users and the servers), on all of
the node's interfaces, keeping only the service protocol's packets that mark a
request, a reply or a connection (data with PSH, SYN, FIN, RST), 128 bytes of
each, in Linux cooked v2 format: every packet says which interface it crossed,
so the analysis (``analysis/wire.py``) sees which base station and which server
a reply came through.  The interface names go next to the capture, as JSON.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from testbed import ports

FILTER = (f"tcp port {ports.SERVICE} and "
          "(tcp[tcpflags] & (tcp-push|tcp-syn|tcp-fin|tcp-rst) != 0)")


class Capture:
    def __init__(self, net, nodes: list[str], directory: Path):
        self.net = net
        self.nodes = nodes
        self.directory = Path(directory)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, ready_timeout: float = 5.0) -> "Capture":
        for node in self.nodes:
            pcap = self.directory / f"capture-{node}.pcap"
            links = json.loads(self.net.node(node).cmd("ip -j link show").strip() or "[]")
            (self.directory / f"capture-{node}.json").write_text(
                json.dumps({str(link["ifindex"]): link["ifname"] for link in links}, indent=1))
            self.processes[node] = self.net.node(node).popen(
                ["tcpdump", "-i", "any", "-y", "LINUX_SLL2", "-s", "128", "-U", "-w", str(pcap), FILTER],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + ready_timeout           # tcpdump writes the file header once listening
        while time.monotonic() < deadline and not all((self.directory / f"capture-{n}.pcap").exists()
                                                       for n in self.nodes):
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
