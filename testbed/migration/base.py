"""The migration engine: what every mode shares.

A migration runs in the *source* server's agent and talks to the destination
server's agent over the emulated network.  A mode is one module of
``testbed.migration.modes`` with one ``MigrationMode`` subclass that names
itself, declares its options (an ``Options`` class, validated by the
experiment schema) and implements two hooks:

* ``pre(m)``: work done while the service keeps running (pre-migration);
* ``final(m)``: the downtime phase; it must leave the service running at the
  destination and return the new ``Instance``.

``Migration`` times every phase, counts every byte, and makes failure safe: if
the destination cannot take over, the service is restored at the source from
the state that was just checkpointed, and the error is reported.  It reaches
the source server only through the ``MigrationSource`` protocol.
"""

from __future__ import annotations

import shutil
import time
import traceback
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import Field

from testbed import ports
from testbed.config.base import Strict
from testbed.containers.server import Instance, Limits, ServerContainers
from testbed.events import EventLog
from testbed.registry import MIGRATION_MODES


@dataclass
class ContainerSpec:
    """Everything needed to create a container of a service on any server."""

    service: str
    app: str
    image: str
    port: int = ports.SERVICE
    limits: Limits = field(default_factory=Limits)
    env: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "ContainerSpec":
        data = dict(data)
        data["limits"] = Limits(**data.get("limits", {}))
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


class MigrationOptions(Strict):
    """Options every mode that checkpoints understands (a mode may add its own)."""

    quiesce: float = Field(default=1.0, ge=0, le=10, description=(
        "longest wait (s) for a moment between two requests before a checkpoint; 0: any moment"))


class MigrationMode(ABC):
    """One way of moving a service (one module of ``testbed.migration.modes``)."""

    name: ClassVar[str]
    carries_state: ClassVar[bool] = True
    lazy_restore: ClassVar[bool] = False        # the destination restores while memory still arrives
    pre_copies: ClassVar[bool] = False          # sends a checkpoint over the agents' channel before the downtime
    Options: ClassVar[type[MigrationOptions]] = MigrationOptions

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            MIGRATION_MODES.register(cls)

    def restores_lazily(self, options: MigrationOptions) -> bool:
        """Whether the destination restores while memory still arrives (its container is then
        reserved for that); a mode whose options decide overrides this."""
        return self.lazy_restore

    def pre(self, m: "Migration") -> None:
        """Pre-migration, while the service runs at the source (default: nothing)."""

    @abstractmethod
    def final(self, m: "Migration") -> Instance:
        """Downtime phase: stop at the source, start at the destination."""


def mode(name: str) -> MigrationMode:
    """An instance of the mode registered as ``name``."""
    return MIGRATION_MODES.get(name)()


class MigrationSource(Protocol):
    """What a migration may use of the source server's agent, and nothing more."""

    server: str
    containers: ServerContainers
    events: EventLog
    outgoing: Path                      # where checkpoints are made before they leave

    def peer(self, server: str):
        """RPC client of another server's agent."""

    def channel(self, server: str):
        """The data channel to another server's receiver (testbed.migration.transfer)."""

    def path_mbps(self, server: str) -> float | None:
        """Bottleneck bandwidth of the path to another server (None: unknown)."""

    def address_towards(self, server: str) -> str:
        """This server's address that another server reaches it at."""

    def release(self, service: str, instance: Instance) -> None:
        """After a successful move: drop the stopped source container."""

    def resume(self, spec: ContainerSpec, instance: Instance, final_images: Path | None) -> Instance:
        """After a failed move: the service runs here again, with its state."""

    def fence(self, server: str, service: str) -> None:
        """The destination does not answer: remove its container of ``service``."""

    def sync_app_layer(self, app: str, dest: str) -> dict:
        """Seed 001: rsync the app's application layer to ``dest`` (bytes sent)."""

    def app_layer_size(self, app: str) -> int:
        """Bytes of the app's application layer."""


class Migration:
    """One migration of one service from this agent's server to ``dest``."""

    def __init__(self, source: MigrationSource, spec: ContainerSpec, instance: Instance, dest: str,
                 mode: MigrationMode, migration_id: str | None = None, options: dict | None = None):
        self.source = source
        self.options = mode.Options.model_validate(options or {})
        self.spec = spec
        self.source_instance = instance
        self.dest = dest
        self.mode = mode
        self.id = migration_id or uuid.uuid4().hex[:10]
        self.workdir = source.outgoing / spec.service / self.id
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.peer = source.peer(dest)
        self.reserved = None          # the destination's answer to "prepare"
        self.pre_done = False
        self.base_images: Path | None = None   # what the destination already holds
        self.final_images: Path | None = None  # set once the source has stopped
        self.record: dict = {
            "migration": self.id, "service": spec.service, "app": spec.app, "mode": mode.name,
            "source": source.server, "dest": dest, "carries_state": mode.carries_state,
            "phases": {}, "bytes": {}, "sizes": {}, "ok": None,
        }
        try:                  # the Docker image (seed 002's Table I lists it beside the checkpoints)
            self.size("image", source.containers.client.images.get(spec.image).attrs["Size"])
        except Exception:     # the record says nothing rather than something wrong
            pass

    # -- bookkeeping used by modes ---------------------------------------------
    def phase(self, name: str):
        """Context manager timing one phase: ``with m.phase("final_transfer"): ...``."""
        return _Phase(self, name)

    def count(self, key: str, nbytes: int) -> None:
        self.record["bytes"][key] = self.record["bytes"].get(key, 0) + int(nbytes)

    def size(self, key: str, nbytes: int) -> None:
        self.record["sizes"][key] = int(nbytes)

    @property
    def containers(self) -> ServerContainers:
        return self.source.containers

    def pace(self, share: float) -> float | None:
        """Bytes/s for a transfer that may take ``share`` of the path's bandwidth (None: all of it,
        or the path's bandwidth is unknown).  Recorded as ``pace_mbps``."""
        mbps = self.source.path_mbps(self.dest)
        if share >= 1 or not mbps:
            return None
        self.record["pace_mbps"] = round(share * mbps, 3)
        return share * mbps * 1e6 / 8

    def send(self, phase: str, slot: str, root: Path, files: list[Path] | None = None,
             counter: str = "before_downtime", pace: float | None = None, then: dict | None = None) -> dict:
        """Push state to the destination (timed as ``phase``, bytes counted under ``counter``;
        ``pace``: bytes/s, see ``pace()``; ``then``: an order carried out on arrival)."""
        with self.phase(phase):
            sent = self.source.channel(self.dest).push(self.spec.service, f"{self.id}-{slot}", root, files,
                                                      then=then, pace_bytes_per_s=pace)
        self.count(counter, sent["bytes"])
        return sent

    def send_and_apply(self, phase: str, slot: str, root: Path, files: list[Path], base_slot: str,
                       delta_encoder: str, pace: float | None = None) -> dict:
        """Push a delta that the destination applies on arrival to the state in ``base_slot``
        (an iterative pre-copy round; the service keeps running here)."""
        order = {"method": "apply_delta", "params": {"service": self.spec.service, "migration": self.id,
                                                     "slot": f"{self.id}-{slot}", "base_slot": base_slot,
                                                     "delta_encoder": delta_encoder}}
        return self.send(phase, slot, root, files, pace=pace, then=order)

    def send_and_restore(self, slot: str, root: Path, files: list[Path] | None = None, **restore) -> Instance:
        """Push the last state with the order to restore on arrival: one WAN crossing.

        Phases ``final_transfer`` (until the destination has the files) and
        ``restore`` (until the service runs there) use the destination's clock,
        which is the source's: all servers are emulated on one host."""
        started = time.time()
        order = {"method": "restore", "params": {"service": self.spec.service, "migration": self.id,
                                                 "slot": f"{self.id}-{slot}", **restore}}
        try:
            sent = self.source.channel(self.dest).push(self.spec.service, f"{self.id}-{slot}", root, files,
                                                      then=order)
        except Exception:
            self.record["phases"]["final_transfer"] = {"start": started, "end": time.time(),
                                                       "seconds": round(time.time() - started, 6), "ok": False}
            raise
        reply = sent["reply"]
        self.record["phases"]["final_transfer"] = {"start": started, "end": reply["arrived"],
                                                   "seconds": round(reply["arrived"] - started, 6), "ok": True}
        self.record["phases"]["restore"] = {"start": reply["arrived"], "end": reply["done"],
                                            "seconds": round(reply["done"] - reply["arrived"], 6), "ok": True}
        self.count("during_downtime", sent["bytes"])
        result = dict(reply["result"])
        self.record["restore_steps"] = result.pop("restore_steps", {})
        self.record["restore_path"] = result.pop("restore_path", None)
        return Instance(**result)

    def prepare_destination(self) -> dict:
        """Reserve a container (and so the new address) at the destination."""
        if self.reserved is None:
            with self.phase("prepare"):
                self.reserved = self.peer.call("prepare", spec=self.spec.to_dict(), migration=self.id,
                                               lazy=self.mode.restores_lazily(self.options))
            self.record["dest_endpoint"] = [self.reserved["ip"], self.reserved["port"]]
            self.source.events.emit("migration.prepared", migration=self.id, service=self.spec.service,
                                   dest=self.dest, endpoint=self.record["dest_endpoint"])
        return self.reserved

    # -- the two phases ------------------------------------------------------------
    def run_pre(self) -> dict:
        """Pre-migration (the service keeps running here).  On failure the destination's part
        is undone and the record says why (``ok`` False); never raises."""
        try:
            self.prepare_destination()
            with self.phase("pre_migration"):
                self.mode.pre(self)
        except Exception as exc:
            self._failed(exc)
            self._undo_destination()
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.record["new_endpoint"] = [self.source_instance.ip, self.source_instance.port]
            self.source.events.emit("migration.done", **self._summary())
            return self.record
        self.pre_done = True
        self.source.events.emit("migration.pre_done", **self._summary())
        return self.record

    def run_final(self) -> tuple[dict, Instance]:
        """Move the service; on any failure resume it at the source.  Never raises but when
        the service could be run neither there nor here."""
        if not self.pre_done:
            self.run_pre()
            if self.record["ok"] is False:
                return self.record, self.source_instance
        instance = None
        try:
            with self.phase("migration"):
                instance = self.mode.final(self)
            self.record["ok"] = True
            self.record["new_endpoint"] = [instance.ip, instance.port]
            self.source.release(self.spec.service, self.source_instance)
        except Exception as exc:
            self._failed(exc)
            try:
                instance = self._resume_at_source()
            except Exception as resume_exc:
                self.source.events.emit("migration.lost", **self._summary(),
                                       resume_error=f"{type(resume_exc).__name__}: {resume_exc}")
                raise RuntimeError(f"migration of {self.spec.service} failed ({self.record['error']}) and "
                                   f"resuming at {self.source.server} failed too ({resume_exc})") from resume_exc
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.source.events.emit("migration.done", **self._summary())
        return self.record, instance

    def _failed(self, exc: Exception) -> None:
        self.record["ok"] = False
        self.record["error"] = f"{type(exc).__name__}: {exc}"
        self.record["trace"] = traceback.format_exc(limit=6)

    def _undo_destination(self) -> None:
        """The destination drops what it holds of this migration; if it does not answer, its
        container is removed from here (all servers share one engine: no split service)."""
        try:
            self.peer.call("abort", service=self.spec.service, migration=self.id, timeout=10)
        except Exception as exc:
            self.record["abort_error"] = str(exc)
            self.source.fence(self.dest, self.spec.service)
            self.record["fenced"] = True

    def _resume_at_source(self) -> Instance:
        self._undo_destination()
        with self.phase("resume_at_source"):
            instance = self.source.resume(self.spec, self.source_instance, self.final_images)
        self.record["fallback"] = True
        self.record["new_endpoint"] = [instance.ip, instance.port]
        return instance

    def _summary(self) -> dict:
        return {key: value for key, value in self.record.items() if key != "trace"}


class _Phase:
    def __init__(self, migration: Migration, name: str):
        self.migration = migration
        self.name = name

    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, exc_type, exc, tb):
        end = time.time()
        self.migration.record["phases"][self.name] = {"start": self.start, "end": end,
                                                      "seconds": round(end - self.start, 6),
                                                      "ok": exc_type is None}
        return False


def checkpoint_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
