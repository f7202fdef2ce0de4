"""Keep the host's cores from sleeping while a network runs (PM QoS ``cpu_dma_latency``).

All emulated servers share the host's cores.  A core with nothing to run halts
(on a VM the hypervisor deschedules it), and a task that arrives after an idle
moment first waits for it to wake and then runs on cold caches: on the
reference VM (``haltpoll`` idle driver) a service at the cloud, whose tasks
arrive a 300 ms round trip apart, processed 8-17 % slower than the same
service fed back to back (``benchmarks/compute.py``), so a server's processing
time depended on its distance from the user, not on its compute alone.
Writing 0 to ``/dev/cpu_dma_latency`` and keeping the file open asks the
kernel for no wake-up latency: idle cores poll instead of halting.  The
request ends when the file is closed, by the process or by its exit, so
nothing outlives the network.  It costs a busy-looking host while it lasts.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

QOS = Path("/dev/cpu_dma_latency")
IDLE_DRIVER = Path("/sys/devices/system/cpu/cpuidle/current_driver")
NO_LATENCY = struct.pack("=i", 0)


def current_latency_us() -> int | None:
    """The host's aggregate wake-up latency limit (microseconds), or None where there is none to read."""
    try:
        return struct.unpack("=i", QOS.read_bytes()[:4])[0]
    except OSError:
        return None


class AwakeCores:
    """The host's cores kept awake from ``hold()`` until ``release()`` (both safe to call twice)."""

    def __init__(self):
        self._fd: int | None = None
        self.reason: str | None = None       # why the cores could not be held, if so

    @property
    def held(self) -> bool:
        return self._fd is not None

    def hold(self) -> "AwakeCores":
        if self._fd is not None:
            return self
        fd = None
        try:
            fd = os.open(QOS, os.O_WRONLY)
            os.write(fd, NO_LATENCY)
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            self.reason = f"{QOS}: {exc.strerror}"
            return self
        self._fd, self.reason = fd, None
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def applied(self) -> dict:
        """For the run record: whether the cores are held awake, why not, and the idle driver."""
        try:
            driver = IDLE_DRIVER.read_text().strip()
        except OSError:
            driver = None
        return {"held": self.held, "reason": self.reason, "idle_driver": driver}
