"""The processes that run on an emulated network: server agents, mobile users, controller.

Each is started inside its node's namespace (so its traffic crosses the
emulated links) and managed from outside through a Unix socket.  ``Stack``
starts them, waits until they answer, and stops them again, also on failure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from testbed.agent import AgentConfig, management_socket as agent_socket
from testbed.controller.config import ControllerConfig
from testbed.deprecation import renamed
from testbed.mu.config import UserConfig
from testbed.mu.user import management_socket as user_socket
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
    def start_agents(self, controller: str | None = None, monitor_period: float | None = None,
                     only: list[str] | None = None) -> dict[str, RpcClient]:
        """An agent on every server (or ``only`` these); ``controller``: ``address:port``
        to report resources to every ``monitor_period``."""
        spec = self.net.spec
        servers = spec.servers()
        addresses = {s: self.net.address(s) for s in servers}
        fastest = max(spec.nodes[s].compute for s in servers)
        for server in only or servers:
            node = spec.nodes[server]
            config = AgentConfig(server=server, address=addresses[server],
                                 subnet=str(self.net.plan.container_subnets[server]),
                                 peers={p: a for p, a in addresses.items() if p != server},
                                 peer_mbps={p: self.net.plan.bottleneck_mbps(server, p) for p in servers if p != server},
                                 run_dir=self.run_dir,
                                 cpus=node.cpus, memory=node.memory, compute=node.compute,
                                 speed=node.compute / fastest, per_thread_quota=spec.network.per_thread_quota,
                                 congestion_control=spec.network.tcp_congestion_control, controller=controller,
                                 **({"monitor_period": monitor_period} if monitor_period else {}))
            path = self.run_dir / f"agent-{server}.json"
            path.write_text(config.model_dump_json(indent=2))
            self.processes[f"agent:{server}"] = self.net.node(server).popen(
                [PYTHON, "-m", "testbed.agent", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.agents[server] = RpcClient(agent_socket(server), timeout=600)
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
    def start_controller(self, config: ControllerConfig, legacy: dict | None = None) -> RpcClient:
        """The central controller on ``config.node``."""
        from testbed.controller.controller import management_socket

        if isinstance(config, str):   # the former (node, dict) signature
            config = renamed("Stack.start_controller(node, dict)", "Stack.start_controller(ControllerConfig)",
                             ControllerConfig.model_validate({**(legacy or {}), "node": config}))

        socket = config.management or management_socket()
        config = config.model_copy(update={"management": socket})   # the dashboard reads it there
        path = self.run_dir / "controller.json"
        path.write_text(config.model_dump_json(indent=2, by_alias=True))
        Path(socket).parent.mkdir(parents=True, exist_ok=True)
        self.processes["controller"] = self.net.node(config.node).popen(
            [PYTHON, "-m", "testbed.controller", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.controller = RpcClient(socket, timeout=600)
        _wait_for(self.controller, "controller", self.processes["controller"])
        return self.controller

    def controller_exit(self) -> int | None:
        """The controller's exit status once it has died (a negative signal number), else None."""
        process = self.processes.get("controller")
        return None if process is None else process.poll()

    def settle_agents(self, timeout: float = 180.0) -> dict[str, str]:
        """Without a controller to ask: wait until no agent has a migration under way (so the
        teardown cuts none short); return those still moving after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            moving = {}
            for client in self.agents.values():
                try:
                    moving.update(client.call("migrations_under_way", timeout=10))
                except (RpcError, OSError):
                    pass
            if not moving or time.monotonic() > deadline:
                return moving
            time.sleep(0.2)

    # -- mobile users ----------------------------------------------------------------
    def user_config(self, user: str, services: list[dict], initial_ap: str | None, **extra) -> UserConfig:
        """The ``UserConfig`` of ``user``: its radio ports and the base stations from the
        network; ``services`` and ``extra`` as ``UserConfig`` fields."""
        plan = self.net.plan
        ports = {}
        for ap in self.net.spec.nodes_with_role("ap"):
            link = plan.link_between(ap, user)
            ports[ap] = {"interface": self.net.interface(user, ap), "address": link.address(user),
                         "gateway": link.address(ap), "station_interface": self.net.interface(ap, user),
                         "station_pid": self.net.node(ap).pid}
        aps = {ap: self.net.spec.nodes[ap] for ap in self.net.spec.nodes_with_role("ap")}
        stations = {ap: list(node.position) for ap, node in aps.items()}
        extra.setdefault("capacities", {ap: node.capacity for ap, node in aps.items()})
        mobility, radio = extra.get("mobility"), extra.get("radio")
        if isinstance(mobility, dict) and "name" in mobility:         # the former spelling
            extra["mobility"] = renamed("mobility {'name': ...}", "{'model': ...}",
                                        {"model": mobility["name"], **{k: v for k, v in mobility.items() if k != "name"}})
        if isinstance(radio, dict) and "handover_time_s" in radio:
            extra["radio"] = renamed("radio handover_time_s", "handover_time (with a unit)",
                                     {**{k: v for k, v in radio.items() if k != "handover_time_s"},
                                      "handover_time": f"{radio['handover_time_s']!r}s"})
        return UserConfig.model_validate({"user": user, "run_dir": str(self.run_dir), "radio_ports": ports,
                                          "stations": stations, "services": services, "initial_ap": initial_ap,
                                          **extra})

    def start_user(self, user: str, services: list[dict], initial_ap: str | None = None, **extra) -> RpcClient:
        config = self.user_config(user, services, initial_ap, **extra)
        path = self.run_dir / f"mu-{user}.json"
        path.write_text(config.model_dump_json(indent=2))
        self.processes[f"mu:{user}"] = self.net.node(user).popen(
            [PYTHON, "-m", "testbed.mu", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = RpcClient(user_socket(user), timeout=60)
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
        from testbed.containers.clean import clean_containers, clean_server_cgroups

        clean_containers()
        clean_server_cgroups()
