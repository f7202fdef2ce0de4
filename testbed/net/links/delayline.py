"""The ``delayline`` backend: htb on both ends for the rate, and a userspace delay line
(``testbed.net.wire``) in a private namespace in the middle of the link for delay,
jitter and loss, for kernels without sch_netem (many VM, CI and WSL2 kernels).

    node1 <-veth-> [wire namespace: delay line] <-veth-> node2
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mininet.net import Mininet
from mininet.util import makeIntfPair

from testbed.net.links.base import OFFLOADS_OFF, ShapedLink, TrafficControlError, checked
from testbed.net.nodes import WireNode

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class DelayLineLink(ShapedLink):
    name = "delayline"
    preference = 0           # a process per link: used where the kernel has no netem
    python = sys.executable

    def __init__(self, node1, node2, shape, seed: int = 0, workdir=None, **kwargs):
        self.wire = None
        self.process = None
        self.stats = None
        super().__init__(node1, node2, shape, seed=seed, workdir=workdir, **kwargs)
        self._start_delay_line()

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,
                     node1=None, node2=None, deleteIntfs=True):
        self.wire = WireNode(f"w-{node1.name}-{node2.name}", congestion_control=node1.congestion_control)
        self.wire.link_label = f"{node1.name}-{node2.name}"
        makeIntfPair(intfname1, "wa", addr1, Mininet.randMac(), node1, self.wire, deleteIntfs=False)
        makeIntfPair(intfname2, "wb", addr2, Mininet.randMac(), node2, self.wire, deleteIntfs=False)
        for name in ("wa", "wb"):
            checked(self.wire, f"ethtool -K {name} {OFFLOADS_OFF} >/dev/null")
            checked(self.wire, f"ip link set {name} up")

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
            self.python, "-m", "testbed.net.wire", "--a", "wa", "--b", "wb",
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
