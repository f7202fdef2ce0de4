"""Planners: one file each, registered here by the name experiment files use."""

from testbed.controller.planners.bandwidth_only import BandwidthOnlyPlanner
from testbed.controller.planners.base import Handover, Migrate, Planner, SystemState
from testbed.controller.planners.cloud import CloudPlanner
from testbed.controller.planners.eco import EcoPlanner
from testbed.controller.planners.equal_load import EqualLoadPlanner
from testbed.controller.planners.green_first import GreenFirstPlanner
from testbed.controller.planners.nearest import NearestPlanner
from testbed.controller.planners.nearest_edge import NearestEdgePlanner
from testbed.controller.planners.orchestrated import OrchestratedPlanner
from testbed.controller.planners.processing_only import ProcessingOnlyPlanner
from testbed.controller.planners.random_server import RandomPlanner
from testbed.controller.planners.shareon import ShareOnPlanner

PLANNERS: dict[str, type[Planner]] = {p.name: p for p in (
    CloudPlanner, RandomPlanner, NearestPlanner, OrchestratedPlanner,
    ShareOnPlanner, EqualLoadPlanner, NearestEdgePlanner, BandwidthOnlyPlanner, ProcessingOnlyPlanner,
    GreenFirstPlanner, EcoPlanner)}


def build(name: str, seed: int = 0, **params) -> Planner:
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r} (known: {', '.join(PLANNERS)})")
    return PLANNERS[name](seed=seed, **params)


__all__ = ["PLANNERS", "Handover", "Migrate", "Planner", "SystemState", "build"]
