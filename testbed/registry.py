"""Extension points: one registry per kind, filled by the files that implement it.

A planner, migration mode, delta encoder, link backend or mobility model is
one module in its package with one class that names itself::

    class Eco(Planner):
        name = "eco"               # registered under this name, by subclassing alone

The registry imports every module of its package the first time it is asked,
so the schema (``testbed.config``) can validate a name and its parameters
without importing the packages that implement them (lower layers never
import higher ones), and a new extension needs no edit anywhere else.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._items: dict[str, type[T]] = {}
        self._discovered = False
        self._lock = threading.RLock()

    def register(self, cls: type[T]) -> type[T]:
        name = cls.__dict__.get("name")
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__}: a {self.kind} needs a class attribute `name`")
        existing = self._items.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"{self.kind} {name!r} is defined twice: {existing.__module__}.{existing.__qualname__}"
                            f" and {cls.__module__}.{cls.__qualname__}")
        self._items[name] = cls
        return cls

    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; ValueError naming the known ones otherwise."""
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def items(self) -> dict[str, type[T]]:
        self._discover()
        return dict(sorted(self._items.items()))

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._items


PLANNERS: Registry = Registry("planner", "testbed.controller.planners")
MIGRATION_MODES: Registry = Registry("migration mode", "testbed.migration.modes")
DELTA_ENCODERS: Registry = Registry("delta encoder", "testbed.migration.delta")
LINK_BACKENDS: Registry = Registry("link backend", "testbed.net.links")
MOBILITY_MODELS: Registry = Registry("mobility model", "testbed.mobility")
