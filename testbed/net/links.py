"""Link backends: how a link gets its bandwidth, delay, jitter and loss.

A backend is a Mininet ``Link`` class plus a probe that says whether this host
can run it.  Two ship with the testbed:

* ``netem``: tc htb (rate) with a netem child (delay, jitter, loss) on both
  ends, Mininet's TCLink recipe, for kernels that have sch_netem;
* ``delayline``: htb on both ends for the rate, and a userspace delay line in a
  private namespace in the middle for delay, jitter and loss, for kernels
  without sch_netem (many VM, CI and WSL2 kernels).

Links with no delay, jitter or loss are plain shaped veth pairs on either
backend.  A new backend is one more ``Link`` subclass registered in
``BACKENDS``.  Unlike Mininet's TCIntf, every tc failure raises: a link never
silently runs without the delay it was asked for.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from mininet.link import Intf, Link
from mininet.net import Mininet
from mininet.util import makeIntfPair

from testbed.config import LinkParams
from testbed.net.nodes import WireNode

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OFFLOADS_OFF = "tx off rx off sg off tso off gso off gro off"


class TrafficControlError(RuntimeError):
    """tc or ethtool refused a setting; the link would not behave as configured."""


def _checked(node, command: str) -> str:
    out = node.cmd(f"{command} 2>&1; echo __rc=$?")
    body, _, rc = out.rpartition("__rc=")
    if rc.strip() != "0":
        raise TrafficControlError(f"{node.name}: `{command}` failed: {body.strip()}")
    return body


class ShapedIntf(Intf):
    """An interface whose egress rate is shaped by htb, with offloads off.

    Offloads are off so that frames on the wire are what the MTU says (the
    delay line forwards frames, not 64 KB GSO super-packets) and checksums are
    real when a frame leaves through a packet socket.
    """

    def config(self, shape: LinkParams | None = None, **params):
        result = super().config(**params)
        _checked(self.node, f"ethtool -K {self.name} {OFFLOADS_OFF} >/dev/null")
        if shape is not None:
            for command in self.tc_commands(shape):
                _checked(self.node, command)
        return result

    def tc_commands(self, shape: LinkParams) -> list[str]:
        rate = f"{shape.bandwidth:.6f}mbit"
        # r2q so that the quantum stays within htb's range at any rate.
        quantum = max(1514, min(200000, int(shape.bandwidth * 1e6 / 8 / 1000)))
        return [
            f"tc qdisc replace dev {self.name} root handle 5: htb default 1",
            f"tc class add dev {self.name} parent 5: classid 5:1 htb rate {rate} ceil {rate} "
            f"burst 15k cburst 15k quantum {quantum}",
            f"tc qdisc add dev {self.name} parent 5:1 handle 10: pfifo limit {shape.queue}",
        ]


def netem_limit(shape: LinkParams) -> int:
    """Packets netem must hold: the queue plus every packet still "on the wire".

    netem counts delayed packets against its limit, so a limit of just the
    queue would drop a full window on a long fat link (75 Mbps / 150 ms keeps
    ~940 full-size frames in flight). Counted twice over, for smaller frames.
    """
    frames_per_second = shape.bandwidth * 1e6 / 8 / 1514
    return shape.queue + 2 * math.ceil(frames_per_second * (shape.delay + shape.jitter))


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


class ShapedLink(Link):
    """A veth pair shaped at both ends: a link without delay."""

    backend = "plain"

    def __init__(self, node1, node2, shape: LinkParams, **kwargs):
        self.shape = shape
        kwargs["intf"] = self.intf_class()
        super().__init__(node1, node2, shape=shape, **kwargs)

    @staticmethod
    def intf_class():
        return ShapedIntf

    def applied(self) -> dict:
        """What this link really does, for the run record."""
        return {"backend": self.backend, **self.shape.model_dump()}

    def stop(self):
        """Nothing to undo here: the veth ends vanish with the nodes' namespaces.
        (Mininet's Link.stop runs `ip link del` through the nodes' shells, which
        may be mid-command when a run is interrupted, and would then hang.)"""


class NetemLink(ShapedLink):
    backend = "netem"

    @staticmethod
    def intf_class():
        return NetemIntf


class DelayLineLink(ShapedLink):
    """node1 <-veth-> [wire namespace: delay line] <-veth-> node2."""

    backend = "delayline"
    python = sys.executable

    def __init__(self, node1, node2, shape: LinkParams, seed: int = 0, workdir: str | None = None,
                 **kwargs):
        self.seed = seed
        self.workdir = Path(workdir or "/run/testbed")
        self.wire = None
        self.process = None
        self.stats = None
        super().__init__(node1, node2, shape, **kwargs)
        self._start_delay_line()

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,
                     node1=None, node2=None, deleteIntfs=True):
        self.wire = WireNode(f"w-{node1.name}-{node2.name}", congestion_control=node1.congestion_control)
        self.wire.link_label = f"{node1.name}-{node2.name}"
        makeIntfPair(intfname1, "wa", addr1, Mininet.randMac(), node1, self.wire, deleteIntfs=False)
        makeIntfPair(intfname2, "wb", addr2, Mininet.randMac(), node2, self.wire, deleteIntfs=False)
        for name in ("wa", "wb"):
            _checked(self.wire, f"ethtool -K {name} {OFFLOADS_OFF} >/dev/null")
            _checked(self.wire, f"ip link set {name} up")

    def _start_delay_line(self):
        shape = self.shape
        self.workdir.mkdir(parents=True, exist_ok=True)
        tag = f"{self.intf1.name}-{self.intf2.name}"
        self.ready_file = self.workdir / f"delayline-{tag}.ready"
        self.stats_file = self.workdir / f"delayline-{tag}.json"
        for path in (self.ready_file, self.stats_file):
            path.unlink(missing_ok=True)
        delay_ms = f"{shape.delay * 1e3:.6f}"
        jitter_ms = f"{shape.jitter * 1e3:.6f}"
        args = [
            self.python, "-m", "testbed.net.delayline", "--a", "wa", "--b", "wb",
            "--delay-ab", delay_ms, "--delay-ba", delay_ms,
            "--jitter-ab", jitter_ms, "--jitter-ba", jitter_ms,
            "--loss-ab", str(shape.loss), "--loss-ba", str(shape.loss),
            "--seed", str(self.seed),
            "--ready-file", str(self.ready_file), "--stats-file", str(self.stats_file),
        ]
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
        self.process = self.wire.popen(args, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")
                raise TrafficControlError(f"delay line {self.wire.link_label} exited: {err.strip()}")
            if time.monotonic() > deadline:
                raise TrafficControlError(f"delay line {self.wire.link_label} did not start")
            time.sleep(0.01)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.stats_file.exists():
            self.stats = json.loads(self.stats_file.read_text())
            self.stats_file.unlink()
        self.ready_file.unlink(missing_ok=True)
        if self.wire is not None:
            self.wire.terminate()
            self.wire = None

    def applied(self) -> dict:
        record = super().applied()
        record["wire_netns"] = self.wire.netns if self.wire else None
        return record


BACKENDS = {"netem": NetemLink, "delayline": DelayLineLink}


def kernel_has_netem() -> tuple[bool, str]:
    """Try a netem qdisc on a throwaway veth in a throwaway namespace."""
    ns = f"tb-probe{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
                       check=True, capture_output=True)
        probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "p0",
                                "root", "netem", "delay", "1ms"], capture_output=True, text=True)
        if probe.returncode == 0:
            return True, "sch_netem available"
        return False, probe.stderr.strip() or "tc refused netem"
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        return False, f"probe failed: {exc}"
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def choose_backend(requested: str) -> tuple[str, str]:
    """Return (backend name, why) for ``auto``, ``netem`` or ``delayline``."""
    has_netem, detail = kernel_has_netem()
    if requested == "auto":
        if has_netem:
            return "netem", "auto: kernel has sch_netem"
        return "delayline", f"auto: kernel lacks sch_netem ({detail})"
    if requested == "netem" and not has_netem:
        raise TrafficControlError(f"link backend netem requested but this kernel lacks it: {detail}. "
                                  "Use backend 'delayline' or 'auto'.")
    if requested not in BACKENDS:
        raise TrafficControlError(f"unknown link backend {requested!r} (known: {', '.join(BACKENDS)})")
    return requested, "requested"


def link_class_for(backend: str, shape: LinkParams) -> type[ShapedLink]:
    if not (shape.delay or shape.jitter or shape.loss):
        return ShapedLink
    return BACKENDS[backend]
