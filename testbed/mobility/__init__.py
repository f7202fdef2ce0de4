"""Mobility models of the virtual user: one file per model, one interface.

``MODELS`` maps the name used in experiment files to the class.
"""

from testbed.mobility.base import MobilityModel
from testbed.mobility.round_trip import RoundTrip
from testbed.mobility.trace import TraceReplay
from testbed.mobility.waypoints import Waypoints

MODELS: dict[str, type[MobilityModel]] = {m.name: m for m in (RoundTrip, Waypoints, TraceReplay)}


def build(name: str, **params) -> MobilityModel:
    if name not in MODELS:
        raise ValueError(f"unknown mobility model {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name](**params)


__all__ = ["MODELS", "MobilityModel", "build"]
