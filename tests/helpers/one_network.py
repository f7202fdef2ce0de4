"""A testbed network in a process of its own, steered over stdin, as a trial of a sweep runs one.

    python tests/helpers/one_network.py

Builds two servers joined by 100 Mbps / 50 ms, starts a counter container on ``s1``, and
prints one JSON line: the network's number, namespaces, addresses and container.  Then it
answers each line of stdin with one JSON line:

    check   median RTT s1 -> s2 (ms) and TCP goodput s1 -> s2 (Mbit/s); the counter's reply
    ping    the same without the goodput
    quit    stop the network (and leave nothing behind)
"""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
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


def counter_reply(net, ip: str) -> dict:
    out = net.node("s2").cmd(f"{sys.executable} -m testbed.query {ip} --op task --client probe --timeout 10")
    return json.loads(out.strip().splitlines()[-1])


def main():
    net = MecNetwork(Pair().spec()).start()
    servers = ServerContainers("s1", str(net.plan.container_subnets["s1"]))
    container = servers.reserve("svc", "counter", image_name("counter"), 7000, Limits())
    instance = servers.start(container, 7000)
    try:
        print(json.dumps({"network": net.number, "namespaces": [net.netns(n) for n in ("s1", "s2")],
                          "s1": net.address("s1"), "subnet": str(net.plan.container_subnets["s1"]),
                          "container": container.name, "ip": instance.ip}), flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            rtt = statistics.median(ping_rtt(net.node("s1"), net.address("s2"), count=15, interval=0.1))
            goodput = None if line.strip() == "ping" else iperf3_mbps(
                net.node("s1"), net.node("s2"), net.address("s2"), seconds=6, omit=2,
                window=str(2 * 100_000_000 // 8 * 2 * 50 // 1000))["received_mbps"]
            print(json.dumps({"rtt_ms": rtt, "goodput_mbps": goodput, "counter": counter_reply(net, instance.ip)}),
                  flush=True)
    finally:
        servers.remove(container.id)
        net.stop()
    print(json.dumps({"stopped": net.number}), flush=True)


if __name__ == "__main__":
    main()
