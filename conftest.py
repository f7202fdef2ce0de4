"""Fixtures and markers for tests and short experiments on the real stack.

Markers (see pyproject.toml): ``network`` (root + Mininet), ``docker``,
``criu``, ``models``, ``experiment``, ``slow`` (excluded by default).  A test
whose requirement is missing is skipped with the reason printed; nothing is
faked.  Every fixture that creates something removes it again, and
``no_leftovers`` checks that after each test that built a network.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from testbed.stack import Stack

ROOT = Path(__file__).resolve().parent


def _missing_for(marker: str) -> str | None:
    if marker in ("network", "docker", "criu", "models", "experiment") and os.geteuid() != 0:
        return "needs root (network namespaces, tc, Docker, CRIU)"
    if marker in ("network", "criu", "models", "experiment") and not shutil.which("mnexec"):
        return "Mininet is not installed: run ./setup.sh"
    if marker in ("docker", "criu", "models", "experiment"):
        from testbed.doctor import docker_info

        if docker_info() is None:
            return "no Docker engine answers: run ./setup.sh"
    if marker in ("criu", "experiment"):
        if not shutil.which("criu"):
            return "criu is not installed: run ./setup.sh"
    return None


def pytest_runtest_setup(item):
    for marker in ("network", "docker", "criu", "models", "experiment"):
        if item.get_closest_marker(marker):
            reason = _missing_for(marker)
            if reason:
                pytest.skip(f"[{marker}] {reason}")


@pytest.fixture(scope="session")
def paper_spec():
    from testbed.config import load_topology

    return load_topology(ROOT / "topologies" / "paper.yaml")


@pytest.fixture
def no_leftovers():
    """Fail the test if it leaves testbed namespaces, links or containers behind, in any network
    but those other live processes own (another network running on the host is not the test's)."""
    yield
    from testbed.clean import clean, leftovers_by_network
    from testbed.net.hostlock import network_owner

    left = {n: found for n, found in leftovers_by_network().items() if network_owner(n) in (None, os.getpid())}
    if left:
        for number in left:
            clean(number)
        pytest.fail(f"left behind: {left}")


@pytest.fixture
def network_factory(tmp_path, no_leftovers):
    """Build MecNetworks from specs; every one is stopped at the end of the test."""
    from testbed.net.network import MecNetwork

    built = []

    def build(spec, **kwargs):
        net = MecNetwork(spec, workdir=tmp_path / f"net{len(built)}", **kwargs)
        built.append(net)
        return net.start()

    yield build
    for net in reversed(built):
        net.stop()


@pytest.fixture
def paper_network(network_factory, paper_spec):
    return network_factory(paper_spec)


def run_testbed(*args, timeout=300, check=False) -> subprocess.CompletedProcess:
    """Run the ``testbed`` command the way a researcher does."""
    return subprocess.run([str(ROOT / ".venv" / "bin" / "testbed"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, check=check, cwd=ROOT)


def start_run(runs: Path, *overrides: str, experiment: Path = ROOT / "experiments" / "default.yaml") -> subprocess.Popen:
    """``testbed run`` in the background, in its own session (a test may kill it or its parts)."""
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "testbed"), "run", str(experiment), "--runs", str(runs),
                             "--no-figures", *overrides], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def events_of(runs: Path) -> list[dict]:
    """Every event logged so far by the trials of the runs under ``runs`` (torn lines skipped)."""
    found = []
    for log in runs.glob("*/trials/*/*/*/events.jsonl"):
        for line in log.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found


@pytest.fixture
def testbed_cli():
    return run_testbed


def query_service(net, ip, op="task", files=(), extra=None, first_id=0, client="test", repeat=1) -> list[dict]:
    """Replies of a service queried from the mobile user's node with ``testbed.query``."""
    args = [sys.executable, "-m", "testbed.query", ip, "--op", op, "--client", client,
            "--first-id", str(first_id), "--repeat", str(repeat), "--full", "--timeout", "60"]
    for path in files:
        args += ["--file", str(path)]
    if extra:
        args += ["--extra", f"'{json.dumps(extra)}'"]
    out = net.node("mu").cmd(" ".join(args))
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run_experiment(path, run_root, overrides=()):
    """Run an experiment file the way ``testbed run`` does; returns the run directory."""
    from testbed.config import load_experiment_with_source
    from testbed.runner import Runner

    spec, source = load_experiment_with_source(path, list(overrides))
    return Runner(spec, source, run_root=run_root, log=lambda message: None).run()


# -- one service used by the mobile user while it migrates (migration and fault tests) ----------

def agents_on_paper_network(tmp_path_factory, name: str):
    """A module's stack: the paper topology with an agent on every server (skipped, with the
    reason, where the network or CRIU cannot run)."""
    from testbed.config import load_topology
    from testbed.net.network import MecNetwork
    from testbed.stack import Stack

    for marker in ("network", "criu"):
        reason = _missing_for(marker)
        if reason:
            pytest.skip(f"[{marker}] {reason}")
    run_dir = tmp_path_factory.mktemp(name)
    net = MecNetwork(load_topology(ROOT / "topologies" / "paper.yaml"), workdir=run_dir / "net").start()
    stack = Stack(net, run_dir)
    try:
        stack.start_agents()
        yield stack
    finally:
        stack.stop()
        net.stop()


def _counter_spec() -> dict:
    from testbed.images import image_name

    return {"app": "counter", "image": image_name("counter"), "port": 7000, "limits": {"cpus": 1.0, "memory_mb": 512}}


COUNTER = _counter_spec()


class Session:
    """One service used by the mobile user during one test."""

    def __init__(self, stack: Stack, service: str, host: str, ap: str, spec: dict | None = None,
                 client: dict | None = None):
        """``client``: extra client settings of the user's service entry (workload, timeouts)."""
        self.stack = stack
        self.service = service
        self.log = stack.run_dir / "requests-mu.jsonl"
        self.log.unlink(missing_ok=True)
        instance = stack.agents[host].call("deploy", spec={"service": service, **(spec or COUNTER)})
        self.host = host
        self.pre_record: dict | None = None          # the last migration's pre-copy phase
        self.user = stack.start_user("mu", [{"service": service, "endpoint": [instance["ip"], instance["port"]],
                                             **(client or {})}], initial_ap=ap)

    def migrate(self, dest: str, mode: str, **options) -> dict:
        source = self.stack.agents[self.host]
        pre = source.call("migrate", service=self.service, dest=dest, mode=mode, phase="pre", options=options)
        self.pre_record = pre
        self.user.call("set_endpoints", service=self.service, pending=[pre["dest_endpoint"]])
        time.sleep(0.5)
        record = source.call("migrate", service=self.service, dest=dest, mode=mode, phase="final",
                             options=options)
        if record["ok"]:
            self.host = dest
        return record

    def wait_served_at(self, record: dict, count: int, timeout: float) -> None:
        """Until ``count`` requests sent after migration ``record``'s last phase ended (a
        migration, a fallback, or a pre-copy that failed) were answered at its new endpoint: a
        restore under load (a model service on a busy CI machine) may take longer than a fixed
        sleep."""
        endpoint = record["new_endpoint"]
        since = max(phase.get("end", phase["start"]) for phase in record["phases"].values())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = _read_jsonl(self.log) if self.log.exists() else []
            if sum(1 for r in rows if r["ok"] and r["endpoint"][0] == endpoint[0] and r["sent"] >= since) >= count:
                return
            time.sleep(0.2)

    def finish(self) -> list[dict]:
        self.stack.stop_user("mu")
        self.stack.agents[self.host].call("remove", service=self.service)
        return [r for r in _read_jsonl(self.log) if r["service"] == self.service]


def model_session(stack: Stack, app: str, image: str) -> Session:
    """A model service on edge1, used by the user at ap2 with one of the test images."""
    from testbed import assets
    from testbed.images import image_name

    spec = {"app": app, "image": image_name(app), "port": 7000,
            "limits": {"cpus": 2.0, "memory_mb": 2048}}
    return Session(stack, app, "edge1", ap="ap2", spec=spec,
                   client={"workload": {"images": [str(assets.fetch(image))]}, "min_timeout": 1.0})


def _read_jsonl(path):
    from testbed.records import read_jsonl

    return read_jsonl(path)


def served(rows):
    return [r for r in rows if r["ok"]]


def outcome(rows) -> str:
    """What the client saw, per endpoint: for the message of a failed assertion."""
    seen = collections.Counter((tuple(r["endpoint"] or ()), "ok" if r["ok"] else (r.get("error") or "")[:40])
                               for r in rows)
    return "; ".join(f"{endpoint} {what}: {count}" for (endpoint, what), count in sorted(seen.items()))


