"""Fixtures and markers for tests and short experiments on the real stack.

Markers (see pyproject.toml): ``network`` (root + Mininet), ``docker``,
``criu``, ``models``, ``experiment``, ``slow`` (excluded by default).  A test
whose requirement is missing is skipped with the reason printed; nothing is
faked.  Every fixture that creates something removes it again, and
``no_leftovers`` checks that after each test that built a network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    """Fail the test if it leaves testbed namespaces, links or containers behind."""
    yield
    from testbed.clean import clean_all, leftovers

    left = leftovers()
    if any(left.values()):
        clean_all()
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
