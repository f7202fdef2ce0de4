"""The controller's configuration: written by the runner as JSON, read by ``python -m testbed.controller``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from testbed import ports
from testbed.config import (CalibrationSpec, MigrationSpec, PlannerSpec, Point, ProbeSpec, RadioSpec, Strict,
                            TopologySpec, schema_default)


class Placement(Strict):
    """A service to deploy: its container and what the planner needs to know of it."""

    service: str
    user: str
    app: str
    image: str
    port: int = ports.SERVICE
    cpus: float = Field(gt=0)
    memory_mb: int = Field(gt=0)
    task_bytes: float = Field(default=100.0, ge=0, description="S_u of eq. (4)")
    quota: float = Field(default=0.1, gt=0, le=1, description="CPU share in the app profile (seed 004)")
    env: dict[str, str] = Field(default={}, description="the container's environment (the experiment's `env`)")

    def container(self) -> dict:
        """The ``ContainerSpec`` an agent deploys."""
        return {"service": self.service, "app": self.app, "image": self.image, "port": self.port,
                "limits": {"cpus": self.cpus, "memory_mb": self.memory_mb}, "env": dict(self.env)}


class InitialUser(Strict):
    position: Point | None = None
    ap: str | None = None


class ControllerConfig(Strict):
    run_dir: Path | None = None
    address: str = Field(description="where it listens: the cloud server's address")
    port: int = ports.CONTROLLER_RPC
    node: str = Field(description="the server it runs on")
    topology: TopologySpec
    planner: PlannerSpec = PlannerSpec(name="cloud")
    seed: int = 0
    radio: RadioSpec = RadioSpec()
    report_period: float = Field(default=schema_default("report_period"), gt=0, description="seconds")
    monitor_period: float = Field(default=schema_default("monitor_period"), gt=0)
    migration: MigrationSpec = MigrationSpec()
    agents: dict[str, str] = Field(description="every server and its agent's address")
    users: dict[str, InitialUser] = {}
    services: list[Placement] = []
    probe: ProbeSpec = ProbeSpec()
    calibration: CalibrationSpec = Field(description="eq. (5)'s constants to start from")
    benchmark_servers: float = Field(default=schema_default("benchmark_servers"), ge=0,
                                     description="seconds of CPU benchmark per server before deploying")
    management: str | None = Field(default=None, description="Unix socket for the runner (default: the usual)")
