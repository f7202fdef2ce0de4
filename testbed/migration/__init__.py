"""Live migration of service containers between emulated servers.

``MODES`` maps a mode name (as written in experiment files) to its class; a
new mode is one new file with a ``MigrationMode`` subclass, added here.
"""

from testbed.migration.base import Migration, MigrationMode, ServiceSpec
from testbed.migration.cold import Cold
from testbed.migration.layered import Layered
from testbed.migration.precopy_delta import PrecopyDelta
from testbed.migration.stateless import Stateless

MODES: dict[str, type[MigrationMode]] = {
    mode.name: mode for mode in (Cold, PrecopyDelta, Layered, Stateless)
}


def mode(name: str) -> MigrationMode:
    try:
        return MODES[name]()
    except KeyError:
        raise ValueError(f"unknown migration mode {name!r} (known: {', '.join(MODES)})") from None


__all__ = ["MODES", "Migration", "MigrationMode", "ServiceSpec", "mode"]
