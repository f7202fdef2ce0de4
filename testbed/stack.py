"""The processes that run on an emulated network: server agents, mobile users, controller.

Each is started inside its node's namespace (so its traffic crosses the
emulated links) and managed from outside through a Unix socket.  ``Stack``
starts them, waits until they answer, and stops them again, also on failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from testbed import agent as agent_module
from testbed.mu import process as mu_process
from testbed.rpc import RpcClient, RpcError

PYTHON = sys.executable


def _wait_for(client: RpcClient, what: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.call("ping" if what.startswith("agent") else "status", timeout=5)
            return
        except (RpcError, OSError):
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"{what} exited with {process.returncode}: {err.strip()[-2000:]}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer within {timeout} s") from None
            time.sleep(0.05)


class Stack:
    def __init__(self, net, run_dir: Path):
        self.net = net
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.agents: dict[str, RpcClient] = {}
        self.users: dict[str, RpcClient] = {}
        self.controller: RpcClient | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- agents -------------------------------------------------------------------
    def start_agents(self, controller: str | None = None, monitor_period: float = 5.0,
                     only: list[str] | None = None) -> dict[str, RpcClient]:
        spec = self.net.spec
        servers = spec.nodes_with_role("cloud", "edge")
        addresses = {s: self.net.address(s) for s in servers}
        self._agent_options = (controller, monitor_period)
        for server in only or servers:
            args = [PYTHON, "-m", "testbed.agent", "--host", server, "--address", addresses[server],
                    "--subnet", str(self.net.plan.container_subnets[server]),
                    "--peers", json.dumps({p: a for p, a in addresses.items() if p != server}),
                    "--run-dir", str(self.run_dir), "--cpus", str(spec.nodes[server].cpus),
                    "--congestion-control", spec.network.tcp_congestion_control,
                    "--monitor-period", str(monitor_period)]
            if controller:
                args += ["--controller", controller]
            self.processes[f"agent:{server}"] = self.net.node(server).popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.agents[server] = RpcClient(agent_module.management_socket(server), timeout=600)
        for server in only or servers:
            _wait_for(self.agents[server], f"agent:{server}", self.processes[f"agent:{server}"])
        return self.agents

    def kill_agent(self, server: str) -> None:
        """SIGKILL a server's agent (fault injection); ``start_agents(only=[server])`` revives it."""
        process = self.processes.pop(f"agent:{server}")
        process.kill()
        process.wait()
        self.agents.pop(server).close()

    # -- controller --------------------------------------------------------------------
    def start_controller(self, node: str, config: dict) -> RpcClient:
        from testbed.controller.process import MANAGEMENT_SOCKET

        path = self.run_dir / "controller.json"
        path.write_text(json.dumps(config, indent=2, default=str))
        Path(MANAGEMENT_SOCKET).parent.mkdir(parents=True, exist_ok=True)
        self.processes["controller"] = self.net.node(node).popen(
            [PYTHON, "-m", "testbed.controller", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.controller = RpcClient(MANAGEMENT_SOCKET, timeout=600)
        _wait_for(self.controller, "controller", self.processes["controller"])
        return self.controller

    # -- mobile users ----------------------------------------------------------------
    def user_config(self, user: str, services: list[dict], initial_ap: str | None, **extra) -> dict:
        plan = self.net.plan
        ports = {}
        for ap in self.net.spec.nodes_with_role("ap"):
            link = plan.link_between(ap, user)
            ports[ap] = {"interface": self.net.interface(user, ap), "address": link.address(user),
                         "gateway": link.address(ap)}
        stations = {ap: list(self.net.spec.nodes[ap].position) for ap in self.net.spec.nodes_with_role("ap")}
        return {"user": user, "run_dir": str(self.run_dir), "radio_ports": ports, "stations": stations,
                "services": services, "initial_ap": initial_ap, **extra}

    def start_user(self, user: str, services: list[dict], initial_ap: str | None = None, **extra) -> RpcClient:
        config = self.user_config(user, services, initial_ap, **extra)
        path = self.run_dir / f"mu-{user}.json"
        path.write_text(json.dumps(config, indent=2))
        self.processes[f"mu:{user}"] = self.net.node(user).popen(
            [PYTHON, "-m", "testbed.mu", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = RpcClient(mu_process.management_socket(user), timeout=60)
        _wait_for(client, f"mu:{user}", self.processes[f"mu:{user}"])
        self.users[user] = client
        return client

    def stop_user(self, user: str) -> None:
        client = self.users.pop(user)
        try:
            client.call("stop", timeout=10)
        except (RpcError, OSError):
            pass
        client.close()
        process = self.processes.pop(f"mu:{user}")
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # -- teardown ----------------------------------------------------------------------
    def stop(self) -> None:
        if self.controller is not None:
            try:
                self.controller.call("stop", timeout=10)
            except (RpcError, OSError):
                pass
            self.controller.close()
            self.controller = None
        for name, client in list(self.users.items()):
            try:
                client.call("stop", timeout=10)
            except (RpcError, OSError):
                pass
            client.close()
        for server, client in list(self.agents.items()):
            try:
                for instance in client.call("instances_here", timeout=10):
                    client.call("remove", service=instance["service"], timeout=30)
            except (RpcError, OSError):
                pass
            client.close()
        for name, process in self.processes.items():
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes.items():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.users.clear()
        self.agents.clear()
        self.processes.clear()
        # Containers reserved for a migration that an interruption cut short belong to
        # no agent any more: the run owns every testbed container on this host.
        from testbed.net.clean import clean_containers

        clean_containers()
