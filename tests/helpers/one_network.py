"""A testbed network in a process of its own, steered over stdin, as a trial of a sweep runs one.

    python tests/helpers/one_network.py [--bare]

Builds two servers joined by 100 Mbps / 50 ms, starts a counter container on ``s1`` (not with
``--bare``), and prints one JSON line: the network's number, namespaces, addresses, container and
the time it was up.  Then it answers each line of stdin with one JSON line:

    check   median RTT s1 -> s2 (ms) and TCP goodput s1 -> s2 (Mbit/s); the counter's reply
    ping    the same without the goodput
    quit    stop the network (and leave nothing behind); the reply gives the time it was down

``NetworkProcess`` starts and steers one (the tests and ``benchmarks/networks.py`` use it).
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from testbed.containers.server import Limits, ServerContainers  # noqa: E402
from testbed.images import image_name  # noqa: E402
from testbed.net.network import MecNetwork  # noqa: E402
from testbed.net.probe import iperf3_mbps, ping_rtt  # noqa: E402
from testbed.net.topo import MecTopo  # noqa: E402


class Pair(MecTopo):
    def build(self):
        self.addLinkClass("wan", bandwidth="100Mbps", delay="50ms")
        self.addServer("s1", position=(0, 0))
        self.addServer("s2", position=(10, 0))
        self.addLink("s1", "s2", "wan")


class NetworkProcess:
    """This script as a child process: ``info`` is its first line (read when first asked for,
    so that several start at once); ``ask`` sends a command, ``reply`` reads the next line."""

    def __init__(self, bare: bool = False, env: dict | None = None):
        self.process = subprocess.Popen([sys.executable, __file__] + (["--bare"] if bare else []),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, cwd=ROOT, env={**os.environ, **(env or {})})
        self._info: dict | None = None

    @property
    def info(self) -> dict:
        if self._info is None:
            self._info = self.reply()
        return self._info

    def reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"network process ended: {self.process.stderr.read()[-2000:]}")
        return json.loads(line)

    def ask(self, command: str) -> None:
        self.info                        # its first line before any answer
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def ping(self) -> dict:
        self.ask("ping")
        return self.reply()

    def quit(self) -> dict:
        self.ask("quit")
        stopped = self.reply()
        self.process.wait(timeout=60)
        return stopped

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def counter_reply(net, ip: str) -> dict:
    out = net.node("s2").cmd(f"{sys.executable} -m testbed.query {ip} --op task --client probe --timeout 10")
    return json.loads(out.strip().splitlines()[-1])


def measure(net, ip: str | None, goodput: bool) -> dict:
    rtt = statistics.median(ping_rtt(net.node("s1"), net.address("s2"), count=15, interval=0.1))
    mbps = iperf3_mbps(net.node("s1"), net.node("s2"), net.address("s2"), seconds=6, omit=2,
                       window=str(2 * 100_000_000 // 8 * 2 * 50 // 1000))["received_mbps"] if goodput else None
    return {"rtt_ms": rtt, "goodput_mbps": mbps, "counter": counter_reply(net, ip) if ip else None}


def main():
    bare = "--bare" in sys.argv[1:]
    net = MecNetwork(Pair().spec()).start()
    servers = container = instance = None
    try:
        if not bare:
            servers = ServerContainers("s1", str(net.plan.container_subnets["s1"]))
            container = servers.reserve("svc", "counter", image_name("counter"), 7000, Limits())
            instance = servers.start(container, 7000)
        print(json.dumps({"network": net.number, "namespaces": [net.netns(n) for n in ("s1", "s2")],
                          "s1": net.address("s1"), "subnet": str(net.plan.container_subnets["s1"]),
                          "container": container.name if container else None,
                          "ip": instance.ip if instance else None, "up": time.time()}), flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            print(json.dumps(measure(net, instance.ip if instance else None, line.strip() != "ping")), flush=True)
    finally:
        if container is not None:
            servers.remove(container.id)
        net.stop()
    print(json.dumps({"stopped": net.number, "down": time.time()}), flush=True)


if __name__ == "__main__":
    main()
