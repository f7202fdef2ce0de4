"""Live migration of service containers between emulated servers.

The engine is ``base``; modes are one module each in ``modes`` and delta
encoders in ``delta``, found by name through ``testbed.registry``; ``transfer``
moves state across the emulated WAN.
"""

from testbed.deprecation import module_getattr
from testbed.migration.base import (ContainerSpec, Migration, MigrationMode, MigrationOptions, MigrationSource,
                                    checkpoint_size, mode)

__all__ = ["ContainerSpec", "Migration", "MigrationMode", "MigrationOptions", "MigrationSource", "checkpoint_size",
           "mode"]


def _modes() -> dict:
    from testbed.registry import MIGRATION_MODES

    return MIGRATION_MODES.items()


__getattr__ = module_getattr(__name__, {"MODES": ("testbed.registry.MIGRATION_MODES", _modes),
                                        "ServiceSpec": ("testbed.migration.ContainerSpec", lambda: ContainerSpec)})
