"""The mobile user's configuration: written by ``Stack`` as JSON, read by ``python -m testbed.mu``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from testbed.config import Point, RadioSpec, Strict, schema_default


class RadioPortConfig(Strict):
    interface: str = Field(description="the user's interface towards this base station")
    address: str = Field(description="the user's address on it")
    gateway: str = Field(description="the base station's address on it")
    station_interface: str | None = Field(default=None, description="the base station's end (downlink rate)")
    station_pid: int | None = Field(default=None, description="a process in the base station's namespace")


class WorkloadConfig(Strict):
    """What the user sends: test images (paths) cycled through, or a few bytes."""

    images: list[str] = []
    payload_bytes: int = Field(default=16, ge=0)
    op: str = "task"
    think_time: float = Field(default=0.0, ge=0)
    extra: dict = {}


class UsedService(Strict):
    service: str
    app: str | None = None
    endpoint: tuple[str, int] | None = None
    workload: WorkloadConfig = WorkloadConfig()
    min_timeout: float = Field(default=0.5, gt=0, description="shortest task timeout (the app's manifest)")


class UserConfig(Strict):
    user: str
    run_dir: Path | None = None
    radio_ports: dict[str, RadioPortConfig] = Field(description="per base station: the radio interface")
    stations: dict[str, Point] = Field(default={}, description="base station positions")
    capacities: dict[str, float | None] = Field(default={}, description="base station capacity (Mbit/s)")
    attachments: Path | None = Field(default=None, description=(
        "where users mark the base station they are attached to (default: RUN_DIR/radio)"))
    services: list[UsedService] = []
    initial_ap: str | None = None
    mobility: dict | None = Field(default=None, description="{'model': ..., arguments} (testbed.mobility.build)")
    radio: RadioSpec = RadioSpec()
    seed: int = 0
    handover: Literal["rssi", "controller"] = "rssi"
    controller: tuple[str, int] | None = None
    t0: float | None = Field(default=None, description="wall time of experiment time 0 (default: start)")
    tick: float = Field(default=0.1, gt=0, description="mobility and RSSI sampling period")
    report_period: float = Field(default=schema_default("report_period"), gt=0, description="seconds")
    probe_interval: float = Field(default=schema_default("probe_interval"), gt=0)
    autostart: bool = True
