"""Mobility models of the virtual user: one module per model, registered by name
(``testbed.registry.MOBILITY_MODELS``); ``synthetic`` writes traces for them."""

from testbed.deprecation import module_getattr
from testbed.mobility.base import MobilityModel
from testbed.registry import MOBILITY_MODELS


def build(model: str, **arguments) -> MobilityModel:
    """The model registered as ``model``, made from its constructor ``arguments``."""
    return MOBILITY_MODELS.get(model)(**arguments)


__all__ = ["MobilityModel", "build"]


__getattr__ = module_getattr(__name__, {"MODELS": ("testbed.registry.MOBILITY_MODELS", MOBILITY_MODELS.items)})
