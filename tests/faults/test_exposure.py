"""Nothing reachable that should not be: no listener outside the emulated network, no secret
or host path in the service images, containers under Docker's default confinement."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import docker
import pytest

from testbed.config import app_names, load_topology
from testbed.images import image_name
from testbed.net.network import MecNetwork
from testbed.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def listeners(netns: str | None = None) -> list[dict]:
    """Listening TCP/UDP sockets (of a named namespace, or the root one) with their processes."""
    command = ["ss", "-H", "-l", "-n", "-t", "-u", "-p"]
    if netns:
        command = ["ip", "netns", "exec", netns] + command
    found = []
    for line in subprocess.run(command, capture_output=True, text=True).stdout.splitlines():
        fields = line.split()
        pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
        found.append({"local": fields[4], "pids": pids})
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.network
@pytest.mark.docker
def test_nothing_of_the_testbed_listens_outside_the_emulated_network(tmp_path, no_leftovers):
    """With agents, a service, a controller-less user and the delay lines up: the root
    namespace has no listener of the testbed's, and every agent listens on its server's
    address only (orders, state, rsync), never on all addresses."""
    net = MecNetwork(load_topology(ROOT / "topologies" / "paper.yaml"), workdir=tmp_path / "net").start()
    stack = Stack(net, tmp_path)
    try:
        stack.start_agents()
        instance = stack.agents["edge1"].call("deploy", spec={"service": "svc", "app": "counter",
                                                              "image": image_name("counter")})
        stack.start_user("mu", [{"service": "svc", "endpoint": [instance["ip"], instance["port"]]}],
                         initial_ap="ap1")
        ours = [entry for entry in listeners() if any("testbed" in cmdline(pid) for pid in entry["pids"])]
        assert ours == [], ours
        for server in net.spec.servers():
            address = net.address(server)
            mine = [e for e in listeners(net.netns(server)) if any("testbed" in cmdline(p) or "rsync" in cmdline(p)
                                                                 for p in e["pids"])]
            assert {e["local"] for e in mine} == {f"{address}:7100", f"{address}:7101", f"{address}:8730"}, mine
        # the service container runs under Docker's default seccomp and AppArmor profiles, unprivileged
        # (CRIU checkpoints and restores it so; see the README's migration faults)
        config = docker.from_env().api.inspect_container(instance["container_id"])["HostConfig"]
        assert not config.get("Privileged") and not config.get("CapAdd")
        assert not any("unconfined" in option for option in (config.get("SecurityOpt") or [])), config
    finally:
        stack.stop()
        net.stop()


@pytest.mark.docker
@pytest.mark.parametrize("app", app_names())
def test_a_service_image_holds_no_secret_or_host_path(app):
    client = docker.from_env()
    image = client.images.get(image_name(app))
    text = json.dumps({"env": image.attrs["Config"].get("Env"), "labels": image.attrs["Config"].get("Labels"),
                       "history": [h.get("CreatedBy", "") for h in image.history()]})
    for pattern in (r"/work/", r"/home/", r"/root/\.", r"(?i)password", r"(?i)secret", r"(?i)token",
                    r"(?i)api[_-]?key", r"/var/cache/mec-testbed"):
        assert not re.search(pattern, text), (app, pattern)
    listing = client.containers.run(image_name(app), entrypoint=["sh", "-c", "ls -a /root /srv/mec"], remove=True,
                                    network_mode="none").decode()
    assert ".ssh" not in listing and ".netrc" not in listing and ".docker" not in listing, listing
