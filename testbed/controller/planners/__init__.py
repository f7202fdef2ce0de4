"""Planners: one module each, registered by the name experiment files use (``testbed.registry.PLANNERS``)."""

from testbed.controller.planners.base import Action, Handover, Migrate, Planner, build
from testbed.controller.state import Server, Service, Station, SystemState, User
from testbed.deprecation import module_getattr

__all__ = ["Action", "Handover", "Migrate", "Planner", "Server", "Service", "Station", "SystemState", "User",
           "build"]


def _planners() -> dict:
    from testbed.registry import PLANNERS

    return PLANNERS.items()


__getattr__ = module_getattr(__name__, {"PLANNERS": ("testbed.registry.PLANNERS", _planners)})
