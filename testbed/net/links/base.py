"""What every link backend shares: htb shaping, offloads off, no silent failure.

Division of labour (as in Mininet's ``link.py``): a node runs commands, an
interface configures itself (``ShapedIntf``: rate by htb), a link connects two
nodes and gives its traffic the delay, jitter and loss asked for (a backend).

A backend is one module of this package with one ``ShapedLink`` subclass that
names itself (``name = "netem"``), says how much it is preferred under
``backend: auto`` and whether this host can run it (``available``).  Links
with no delay, jitter or loss are plain shaped veth pairs whatever the backend.
Unlike Mininet's TCIntf, every tc failure raises: a link never silently runs
without the delay it was asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from mininet.link import Intf, Link

from testbed.config import LinkParams
from testbed.net.namespaces import network_state
from testbed.registry import LINK_BACKENDS

OFFLOADS_OFF = "tx off rx off sg off tso off gso off gro off"


class TrafficControlError(RuntimeError):
    """tc or ethtool refused a setting; the link would not behave as configured."""


def checked(node, command: str) -> str:
    """Run ``command`` in ``node``'s shell; raise with its output if it fails."""
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
        checked(self.node, f"ethtool -K {self.name} {OFFLOADS_OFF} >/dev/null")
        if shape is not None:
            for command in self.tc_commands(shape):
                checked(self.node, command)
        return result

    def tc_commands(self, shape: LinkParams) -> list[str]:
        return [
            f"tc qdisc replace dev {self.name} root handle 5: htb default 1",
            rate_command(self.name, shape.bandwidth, verb="add"),
            f"tc qdisc add dev {self.name} parent 5:1 handle 10: pfifo limit {shape.queue}",
        ]


def rate_command(interface: str, mbps: float, verb: str = "change") -> str:
    """The tc command that sets a shaped interface's rate (``change``: on the live link)."""
    rate = f"{mbps:.6f}mbit"
    # the quantum stays within htb's range at any rate
    quantum = max(1514, min(200000, int(mbps * 1e6 / 8 / 1000)))
    return (f"tc class {verb} dev {interface} parent 5: classid 5:1 htb rate {rate} ceil {rate} "
            f"burst 15k cburst 15k quantum {quantum}")


class ShapedLink(Link):
    """A veth pair shaped at both ends: a link without delay, and the base of every backend."""

    name: ClassVar[str] = "plain"
    preference: ClassVar[int] = 0       # under ``backend: auto`` the available backend with the highest wins
    intf_class: ClassVar[type[ShapedIntf]] = ShapedIntf

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            LINK_BACKENDS.register(cls)

    def __init__(self, node1, node2, shape: LinkParams, seed: int = 0, workdir: str | Path | None = None,
                 **kwargs):
        """``seed``: for a backend's random jitter and loss; ``workdir``: for its files."""
        self.shape = shape
        self.seed = seed
        self.workdir = Path(workdir) if workdir else network_state() / "net"
        kwargs["intf"] = self.intf_class
        super().__init__(node1, node2, shape=shape, **kwargs)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this host can run the backend, and why (or why not)."""
        return True, "needs nothing from the kernel"

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Return once the link carries traffic (a backend with a helper waits for it)."""

    def applied(self) -> dict:
        """What this link really does, for the run record."""
        return {"backend": type(self).name, **self.shape.model_dump()}

    def stop(self):
        """Nothing to undo here: the veth ends vanish with the nodes' namespaces.
        (Mininet's Link.stop runs `ip link del` through the nodes' shells, which
        may be mid-command when a run is interrupted, and would then hang.)"""


def choose_backend(requested: str) -> tuple[str, str]:
    """Return (backend name, why) for ``auto`` or a backend's name."""
    if requested == "auto":
        refused = []
        for name, cls in sorted(LINK_BACKENDS.items().items(), key=lambda item: -item[1].preference):
            ok, detail = cls.available()
            if ok:
                reason = f"auto: {detail}" + (f" ({'; '.join(refused)})" if refused else "")
                return name, reason
            refused.append(f"{name}: {detail}")
        raise TrafficControlError(f"no link backend can run on this host: {'; '.join(refused)}")
    backend = LINK_BACKENDS.get(requested)
    ok, detail = backend.available()
    if not ok:
        others = ", ".join(n for n in LINK_BACKENDS.names() if n != requested)
        raise TrafficControlError(f"link backend {requested} requested but this host cannot run it: {detail}. "
                                  f"Use 'auto' or another backend ({others}).")
    return requested, "requested"


def link_class_for(backend: str, shape: LinkParams) -> type[ShapedLink]:
    if not (shape.delay or shape.jitter or shape.loss):
        return ShapedLink
    return LINK_BACKENDS.get(backend)
