"""A user that stands still (seed 004's scenarios: only the planners act)."""

from __future__ import annotations

from pydantic import Field

from testbed.config import Strict
from testbed.mobility.base import MobilityModel, Point


class StaticParams(Strict):
    position: Point | None = Field(default=None, description="default: the first point of the user's path")


class Static(MobilityModel):
    name = "static"
    Params = StaticParams

    def __init__(self, position: Point):
        self.point = (float(position[0]), float(position[1]))

    @classmethod
    def arguments(cls, params: StaticParams, path):
        return {"position": list(params.position or (path[0] if path else (0.0, 0.0)))}

    def position(self, t: float) -> Point:
        return self.point

    def velocity(self, t: float, dt: float = 0.1) -> Point:
        return 0.0, 0.0
