"""Old public names keep working for a while, with a DeprecationWarning saying what replaced them."""

from __future__ import annotations

import warnings


def renamed(old: str, new: str, value):
    """Warn that ``old`` is now ``new`` and return ``value``."""
    warnings.warn(f"{old} is deprecated: use {new} (see CHANGELOG.md)", DeprecationWarning, stacklevel=3)
    return value


def module_getattr(module: str, table: dict):
    """A module ``__getattr__`` serving ``table``'s old names: {old: (new name, loader)}."""
    def __getattr__(name: str):
        if name in table:
            new, load = table[name]
            return renamed(f"{module}.{name}", new, load())
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
