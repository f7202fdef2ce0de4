"""Resource Monitor (seed 002, Fig. 1): CPU and memory of every service container here,
reported to the controller every monitor period."""

from __future__ import annotations

import threading
import time

from testbed.agent.deployment import Deployment
from testbed.rpc import RpcClient


class ResourceMonitor:
    """Cores are the server's own (a host core divided by the server's speed), so a
    server's utilisation is what its planner threshold means (seed 004: 50 %)."""

    def __init__(self, deployment: Deployment, cpus: float, speed: float = 1.0, cgroup=None):
        self.deployment = deployment
        self.cpus = cpus
        self.speed = speed
        self.cgroup = cgroup

    def resources(self) -> dict:
        """CPU cores and memory per service (None where unknown: no meter, the first
        sample, or the container just went) and the server's totals: everything that
        runs under the server's cgroup (services, background load), or the services'
        sum where the server has no cgroup."""
        services = {}
        for instance in self.deployment.running():     # threads started since have their own quota too
            self.deployment.containers.spread_threads(instance.container_id)
        with self.deployment.lock:
            meters = list(self.deployment.meters.items())
        for service, meter in meters:
            try:
                cpu, memory = (meter.cpu_cores(), meter.memory_bytes()) if meter else (None, None)
            except OSError:
                cpu, memory = None, None
            services[service] = {"cpu_cores": None if cpu is None else round(cpu / self.speed, 4),
                                 "memory_bytes": memory}
        total_cpu = sum(s["cpu_cores"] or 0.0 for s in services.values())
        memory = sum(s["memory_bytes"] or 0 for s in services.values())
        if self.cgroup is not None:
            try:
                used = self.cgroup.cores_used()
                total_cpu = total_cpu if used is None else used / self.speed
                memory = self.cgroup.memory_bytes()
            except OSError:
                pass
        return {"server": self.deployment.server, "time": time.time(), "cpus": self.cpus,
                "cpu_utilisation": round(total_cpu / self.cpus, 4), "memory_bytes": memory, "services": services}

    def report_every(self, period: float, controller: str, stop: threading.Event) -> threading.Thread:
        """Send ``resources()`` to the controller (``address:port``) every ``period`` s until ``stop``."""
        host, port = controller.rsplit(":", 1)
        client = RpcClient((host, int(port)), timeout=10)

        def loop():
            while not stop.wait(period):
                try:
                    client.call("server_report", report=self.resources())
                except Exception:  # the controller may be briefly unreachable; report next period
                    pass

        thread = threading.Thread(target=loop, name="resource-monitor", daemon=True)
        thread.start()
        return thread
