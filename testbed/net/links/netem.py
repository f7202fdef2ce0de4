"""The ``netem`` backend: htb for the rate with a netem child for delay, jitter and loss
(Mininet's TCLink recipe), on kernels that have sch_netem."""

from __future__ import annotations

import math
import os
import subprocess

from testbed.config import LinkParams
from testbed.net.links.base import ShapedIntf, ShapedLink
from testbed.net.namespaces import TRANSIENT_PREFIX


def netem_limit(shape: LinkParams) -> int:
    """Packets netem must hold: the queue plus every packet still "on the wire".

    netem counts delayed packets against its limit, so a limit of just the
    queue would drop a full window on a long fat link (75 Mbps / 150 ms keeps
    ~940 full-size frames in flight). Counted twice over, for smaller frames.
    """
    frames_per_second = shape.bandwidth * 1e6 / 8 / 1514
    return shape.queue + 2 * math.ceil(frames_per_second * (shape.delay + shape.jitter))


def kernel_has_netem() -> tuple[bool, str]:
    """Try a netem qdisc on a throwaway veth in a throwaway namespace."""
    ns = f"{TRANSIENT_PREFIX}probe{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
                       check=True, capture_output=True)
        probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "p0",
                                "root", "netem", "delay", "1ms"], capture_output=True, text=True)
        if probe.returncode == 0:
            return True, "kernel has sch_netem"
        return False, f"kernel lacks sch_netem ({probe.stderr.strip() or 'tc refused netem'})"
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        return False, f"netem probe failed: {exc}"
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


class NetemIntf(ShapedIntf):
    """htb for the rate, netem below it for delay, jitter and loss (the
    delay line's equivalent: the same queue, then the wire)."""

    def tc_commands(self, shape: LinkParams) -> list[str]:
        commands = super().tc_commands(shape)[:2]
        netem = f"tc qdisc add dev {self.name} parent 5:1 handle 10: netem limit {netem_limit(shape)}"
        netem += f" delay {shape.delay * 1e3:.3f}ms"
        if shape.jitter:
            netem += f" {shape.jitter * 1e3:.3f}ms"
        if shape.loss:
            netem += f" loss {shape.loss:.5f}%"
        return commands + [netem]


class NetemLink(ShapedLink):
    name = "netem"
    preference = 10          # in the kernel: preferred wherever it exists
    intf_class = NetemIntf

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return kernel_has_netem()
