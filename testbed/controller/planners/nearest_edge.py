"""Seed 000's nearest-edge baseline: each container on the edge nearest to its user; never migrate."""

from testbed.controller.planners.base import Planner


class NearestEdgePlanner(Planner):
    name = "nearest-edge"
