"""The agent's configuration: written by ``Stack`` as JSON, read by ``python -m testbed.agent``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from testbed.config import Strict, schema_default


class AgentConfig(Strict):
    server: str = Field(description="the emulated server this agent runs on")
    address: str = Field(description="the server's stable address (its loopback)")
    subnet: str = Field(description="the server's container subnet, e.g. 172.16.1.0/24")
    peers: dict[str, str] = Field(default={}, description="every other server and its address")
    peer_mbps: dict[str, float] = Field(default={}, description=(
        "every other server and the bottleneck bandwidth of the routed path to it (Mbit/s)"))
    run_dir: Path | None = None
    cpus: float = Field(default=2.0, gt=0, description="cores the server offers to services")
    memory: float = Field(default=4 * 1024**3, gt=0, description="bytes of memory the server offers")
    compute: float = Field(default=1.0, gt=0, description="the server's computational power C_s")
    speed: float = Field(default=1.0, gt=0, le=1, description="compute / the topology's highest compute: the "
                                                              "share of a host core one of its cores gets")
    per_thread_quota: bool = Field(default=True, description="every thread of a service its own quota "
                                                              "at speed < 1 (testbed.containers.thread_quota)")
    congestion_control: str = "cubic"
    controller: str | None = Field(default=None, description="address:port to send resource reports to")
    monitor_period: float = Field(default=schema_default("monitor_period"), gt=0)
