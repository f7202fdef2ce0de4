"""Link backends: how a link gets its bandwidth, delay, jitter and loss (one module each;
see ``base`` for the interface)."""

from testbed.deprecation import module_getattr
from testbed.net.links.base import (OFFLOADS_OFF, ShapedIntf, ShapedLink, TrafficControlError, choose_backend,
                                    link_class_for)
from testbed.net.links.delayline import DelayLineLink
from testbed.net.links.netem import NetemLink, kernel_has_netem, netem_limit

__all__ = ["OFFLOADS_OFF", "DelayLineLink", "NetemLink", "ShapedIntf", "ShapedLink", "TrafficControlError",
           "choose_backend", "kernel_has_netem", "link_class_for", "netem_limit"]


def _backends() -> dict:
    from testbed.registry import LINK_BACKENDS

    return LINK_BACKENDS.items()


__getattr__ = module_getattr(__name__, {"BACKENDS": ("testbed.registry.LINK_BACKENDS", _backends)})
