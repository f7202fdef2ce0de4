"""Freeze a container at a quiet moment, before CRIU dumps it.

Two reasons to freeze it ourselves rather than let CRIU do it:

* **Where the service stands.** A model service under load spends most of its
  time inside an inference, rewriting tens of MB of activations.  A checkpoint
  taken mid-inference differs from the previous one by all of them; taken
  between two requests it differs by little more than the counter (seed 002's
  delta checkpoints: 96-99.6 % smaller).  So we wait (briefly, while the
  service is still serving) until every thread sleeps, then freeze.
* **Time.** On cgroup v1 CRIU writes FROZEN and then sleeps 100 ms before it
  looks again; a cgroup already frozen is dumped at once.  CRIU leaves the
  cgroup as it found it, so ``thaw`` afterwards (a no-op once the service has
  exited after a final checkpoint).

The cgroup is found as ``testbed.containers.cgroups`` finds it (agents run in
Mininet nodes, whose mount namespace lacks the cgroup mounts).
"""

from __future__ import annotations

import time
from pathlib import Path

from testbed.containers.cgroups import ContainerCgroups


class FreezerError(RuntimeError):
    pass


class Freezer:
    """The freezer cgroup of one container (cgroup v1 ``freezer`` or v2 ``cgroup.freeze``)."""

    def __init__(self, cgroups: ContainerCgroups):
        self.v2 = cgroups.v2
        self.dir = cgroups.dir("freezer")

    def threads(self) -> list[int]:
        name = "cgroup.threads" if self.v2 else "tasks"
        return [int(tid) for tid in (self.dir / name).read_text().split()]

    def idle(self) -> bool:
        """Every thread of the container is asleep (no request being worked on)."""
        for tid in self.threads():
            try:
                stat = Path(f"/proc/{tid}/stat").read_text()
            except OSError:
                continue     # exited meanwhile
            if stat.rsplit(")", 1)[1].split()[0] not in ("S", "I"):
                return False
        return True

    def wait_idle(self, timeout: float, poll: float = 0.001) -> bool:
        """Wait up to ``timeout`` s for an idle moment; True if one came."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def frozen(self) -> bool:
        if self.v2:
            return "frozen 1" in (self.dir / "cgroup.events").read_text()
        return (self.dir / "freezer.state").read_text().strip() == "FROZEN"

    def _write(self, frozen: bool) -> None:
        if self.v2:
            (self.dir / "cgroup.freeze").write_text("1" if frozen else "0")
        else:
            (self.dir / "freezer.state").write_text("FROZEN" if frozen else "THAWED")

    def freeze(self, timeout: float = 5.0) -> None:
        self._write(True)
        deadline = time.monotonic() + timeout
        while not self.frozen():
            if time.monotonic() >= deadline:
                self.thaw()
                raise FreezerError(f"{self.dir} did not freeze within {timeout} s")
            time.sleep(0.0005)

    def thaw(self) -> None:
        try:
            self._write(False)
        except OSError:
            pass     # the cgroup went away with the container
