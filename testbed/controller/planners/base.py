"""What planners answer (``Action``) and their interface (``Planner``).

A planner is one module of this package with one ``Planner`` subclass that
names itself and declares its parameters as a ``Params`` class (validated by
the experiment schema: a typo is an error before anything is built).  The
controller calls it on three triggers with the current ``SystemState``
(``testbed.controller.state``) and executes the actions it answers, logging
them with the planner's estimates:

* ``on_handover``: a user handed over by itself (RSSI), seed 002's trigger of
  the cloud, random and nearest planners;
* ``on_report``: a user's Local Monitor reported (every report period);
* ``on_tick``: the periodic resource check (seed 004: every 5 s; seed 000).
"""

from __future__ import annotations

import random
from abc import ABC
from dataclasses import dataclass, field
from typing import ClassVar

from testbed.config import Strict
from testbed.controller import state as _state
from testbed.controller.state import Service, SystemState, User
from testbed.deprecation import module_getattr
from testbed.registry import PLANNERS


@dataclass
class Migrate:
    service: str
    dest: str
    pre_at: float | None = None     # wall time to start pre-migration (None: now)
    final_at: float | None = None   # wall time of the migration phase (None: once pre is done)
    estimates: dict = field(default_factory=dict)


@dataclass
class Handover:
    user: str
    target: str
    at: float | None = None


Action = Migrate | Handover


class Planner(ABC):
    name: ClassVar[str]
    handover: ClassVar[str] = "rssi"     # who triggers handovers: the user ("rssi") or the controller
    uses_checkpoint_sizes: ClassVar[bool] = False   # the controller probes them (seed 002's t0) only if so

    class Params(Strict):
        """A planner without parameters; subclasses declare their own."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            PLANNERS.register(cls)

    def __init__(self, seed: int = 0, params: "Planner.Params | None" = None):
        self.rng = random.Random(seed)
        self.params = params if params is not None else self.Params()

    def initial_server(self, state: SystemState, service: Service, user: User) -> str:
        """Where to deploy a new service (default: the edge nearest to the user)."""
        return state.nearest_server(user.position) if user.position else state.stations[user.ap].uplink

    def on_handover(self, state: SystemState, user: User, source: str, target: str) -> list[Action]:
        return []

    def on_report(self, state: SystemState, user: User) -> list[Action]:
        return []

    def on_reports(self, state: SystemState, users: list[User]) -> list[Action]:
        """Reports that arrive at the same moment (a simulator's report instant): by default each
        in turn.  A planner that looks at every user on each report overrides it to look once."""
        actions: list[Action] = []
        for user in users:
            actions += self.on_report(state, user)
        return actions

    def on_tick(self, state: SystemState) -> list[Action]:
        return []

    def explain(self) -> dict:
        """What the last decision was based on, for the Central Database (default: nothing more
        than each action's own estimates)."""
        return {}


def build(name: str, seed: int = 0, **params) -> Planner:
    """The planner registered as ``name`` with its parameters validated (ValueError names a bad one)."""
    from pydantic import ValidationError

    from testbed.config.base import validation_lines

    cls = PLANNERS.get(name)
    try:
        typed = cls.Params.model_validate(params)
    except ValidationError as exc:
        raise ValueError(f"planner {name!r}: " + "; ".join(validation_lines(exc, "params"))) from None
    return cls(seed=seed, params=typed)


__getattr__ = module_getattr(__name__, {name: (f"testbed.controller.state.{name}", lambda name=name: getattr(_state, name))
                                        for name in ("Network", "Server", "Station")})
