"""Parameter sweeps: every grid point times every repetition is one trial, run as a Dask task.

A trial is one run of the experiment with the point's overrides, ``repeat=1`` and
the repetition's seed (``derive_seed``): its own run record, emulated
(``testbed run``) or simulated (``testbed sim``).  Trials are tasks of Dask
distributed: on a local cluster by default, or on the workers of a scheduler
(``--cluster tcp://host:8786``, workers started with ``testbed worker``), each
running its trial in a process of its own in a scratch directory and shipping
the record back as a compressed archive, which lands in the sweep directory:

    <sweep>/sweep.json                 the experiment (effective), grid, repetitions, backend
    <sweep>/trials/<point>-rep<k>/     each trial's record, and trial.json (ok, error, seconds)
    <sweep>/trials.csv, trials.parquet one row per trial and planner (and scenario, service)
    <sweep>/figures/                   any metric against every swept key, per planner, 95 % intervals

A sweep resumes where it stopped (Ctrl-C, a lost worker): trials with a record are
skipped, failed ones run again.  An emulated trial needs a network of its host
(Dask resource ``networks``): a host holds up to ``--max-networks`` at once (one
per core by default), so ``--parallel`` emulated trials run side by side, each
in a network of its own; simulated trials run ``--parallel`` at a time.
"""

from __future__ import annotations

import io
import os
import itertools
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from testbed.config import ConfigError, derive_seed, load_experiment_with_source, parse_override

NETWORKS = "networks"          # the Dask resource an emulated trial takes (one network of its host)


def parse_grid(texts: list[str]) -> dict[str, list[str]]:
    """``KEY=v1,v2`` (commas inside brackets or braces do not split) -> {KEY: [v1, v2]}."""
    grid: dict[str, list[str]] = {}
    for text in texts:
        if "=" not in text:
            raise ConfigError(f"--grid {text!r}: expected KEY=v1,v2,..., e.g. links.edge_edge.delay=20ms,50ms")
        key, raw = text.split("=", 1)
        values, depth, current = [], 0, ""
        for char in raw:
            depth += char in "[{"
            depth -= char in "]}"
            if char == "," and depth == 0:
                values.append(current.strip())
                current = ""
            else:
                current += char
        values.append(current.strip())
        if not key.strip() or any(not v for v in values):
            raise ConfigError(f"--grid {text!r}: an empty key or value")
        grid[key.strip()] = values
    return grid


def file_grid(grid: dict[str, list]) -> dict[str, list[str]]:
    """An experiment file's ``sweep.grid`` as override texts (values that are not strings as JSON)."""
    return {key: [value if isinstance(value, str) else json.dumps(value) for value in values]
            for key, values in grid.items()}


@dataclass(frozen=True)
class SweepTrial:
    point: tuple[tuple[str, str], ...]
    repetition: int

    @property
    def name(self) -> str:
        parts = [f"{key.split('.')[-1]}={value}" for key, value in self.point]
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(parts)) or "base"
        return f"{slug[:120]}-rep{self.repetition}"

    def overrides(self, seed: int) -> list[str]:
        return [f"{key}={value}" for key, value in self.point] + ["repeat=1",
                                                                  f"seed={derive_seed(seed, self.repetition)}"]


def run_trial(experiment: str, overrides: list[str], simulate: bool) -> dict:
    """One trial, on whichever worker runs it: the experiment (effective, as YAML text) with the
    overrides, in a scratch directory; its record as a .tar.gz, and how it went."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tb-trial-") as scratch:
        scratch = Path(scratch)
        (scratch / "experiment.yaml").write_text(experiment)
        command = [sys.executable, "-m", "testbed", "sim" if simulate else "run", str(scratch / "experiment.yaml"),
                   "--runs", str(scratch / "runs"), "--no-figures"]
        for text in overrides:
            command += ["--set", text]
        done = subprocess.run(command, capture_output=True, text=True)
        records = sorted((scratch / "runs").glob("*")) if (scratch / "runs").exists() else []
        archive = b""
        if records:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                tar.add(records[0], arcname="record")
            archive = buffer.getvalue()
        error = None if done.returncode == 0 else (done.stderr.strip() or done.stdout.strip())[-2000:]
        return {"ok": done.returncode == 0 and bool(records), "error": error, "record": archive,
                "seconds": round(time.time() - started, 2), "host": _hostname()}


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _extract(archive: bytes, target: Path) -> None:
    """A worker's record into ``target``: regular files and directories under it, nothing else."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            path = (target / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not path.is_relative_to(target.resolve()):
                raise ValueError(f"a trial's record holds {member.name!r}: not a file under its directory")
        tar.extractall(target, members=members)


class Sweep:
    def __init__(self, experiment: Path, grid: dict[str, list[str]], repeat: int, simulate: bool,
                 overrides: list[str] | None = None, directory: Path | None = None, run_root: Path | None = None):
        spec, source = load_experiment_with_source(experiment, overrides)
        for key in grid:            # every grid value must make a valid experiment, before anything runs
            for value in grid[key]:
                parse_override(f"{key}={value}")
        self.spec, self.grid, self.repeat, self.simulate = spec, grid, repeat, simulate
        self.experiment = yaml.safe_dump(json.loads(json.dumps(source, default=str)), sort_keys=False)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.directory = Path(directory) if directory else Path(run_root or "runs") / f"{spec.name}-sweep-{stamp}"
        self._check_or_write_plan()
        self.trials = [SweepTrial(tuple(zip(grid, values)), r)
                       for values in itertools.product(*grid.values()) for r in range(1, repeat + 1)]
        for trial in self.trials:   # and load: a typo in a key fails here, not in a worker
            if trial.repetition == 1:
                load_experiment_with_source(experiment, (overrides or []) + trial.overrides(spec.seed))

    def _check_or_write_plan(self) -> None:
        plan = {"experiment": self.experiment, "grid": self.grid, "repeat": self.repeat,
                "backend": "simulator" if self.simulate else "emulator"}
        path = self.directory / "sweep.json"
        if path.exists():
            found = json.loads(path.read_text())
            differs = [k for k in ("experiment", "grid", "repeat", "backend") if found.get(k) != plan[k]]
            if differs:
                raise ConfigError(f"{self.directory}: holds another sweep (its {', '.join(differs)} differ); "
                                  "resume it with the same file, grid and repetitions, or use a new directory")
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**plan, "created": time.time()}, indent=1))

    def _dir(self, trial: SweepTrial) -> Path:
        return self.directory / "trials" / trial.name

    def done(self, trial: SweepTrial) -> bool:
        path = self._dir(trial) / "trial.json"
        return path.exists() and json.loads(path.read_text()).get("ok") is True

    def pending(self) -> list[SweepTrial]:
        return [t for t in self.trials if not self.done(t)]

    def _store(self, trial: SweepTrial, result: dict) -> None:
        target = self._dir(trial)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        if result.get("record"):
            _extract(result["record"], target)
        (target / "trial.json").write_text(json.dumps({
            "point": dict(trial.point), "repetition": trial.repetition, "ok": result["ok"], "error": result["error"],
            "seconds": result.get("seconds"), "host": result.get("host")}, indent=1))

    def run(self, parallel: int = 1, cluster: str | None = None, log=print) -> Path:
        """Run every pending trial; returns the sweep directory (its table written)."""
        from distributed import Client, LocalCluster, as_completed

        todo = self.pending()
        log(f"{len(self.trials) - len(todo)} of {len(self.trials)} trials already done; {len(todo)} to run")
        if todo:
            local = None
            if cluster:
                client = Client(cluster, timeout="30s")
            else:
                from testbed.net.hostlock import max_networks

                workers = max(1, parallel)
                if not self.simulate and workers > max_networks():
                    log(f"emulated trials: this host holds {max_networks()} networks at once (--max-networks), "
                        f"so {max_networks()} trials at a time")
                    workers = max_networks()
                local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                     resources={NETWORKS: 1})
                client = Client(local)
            resources = None if self.simulate else {NETWORKS: 1}
            try:
                futures = {client.submit(run_trial, self.experiment, t.overrides(self.spec.seed), self.simulate,
                                         key=f"trial-{self.directory.name}-{t.name}", resources=resources,
                                         retries=1, pure=False): t for t in todo}
                for future in as_completed(futures):
                    trial = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:         # a worker lost twice, or the task itself raised
                        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "record": b""}
                    self._store(trial, result)
                    log(f"{trial.name}: {'ok' if result['ok'] else 'failed: ' + (result['error'] or '')[-200:]}"
                        f" ({result.get('seconds', 0):.0f} s)")
            finally:
                client.close()
                if local is not None:
                    local.close()
        self.table()
        return self.directory

    def table(self) -> pd.DataFrame:
        """One row per trial and planner (and scenario and service): the point, the repetition,
        whether it ran, and its metrics from the trial's summary."""
        rows = []
        for trial in self.trials:
            info_path = self._dir(trial) / "trial.json"
            if not info_path.exists():
                continue
            info = json.loads(info_path.read_text())
            base = {**dict(trial.point), "repetition": trial.repetition, "trial": trial.name, "ok": info["ok"],
                    "error": info["error"], "seconds": info.get("seconds")}
            summary = self._dir(trial) / "record" / "summary.json"
            found = json.loads(summary.read_text()).get("trials", []) if summary.exists() else []
            if not found:
                rows.append(base)
            for row in found:
                rows.append({**base, **{k: v for k, v in row.items() if k not in ("repetition", "missing")}})
        frame = pd.DataFrame(rows)
        frame.to_csv(self.directory / "trials.csv", index=False)
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(
            self.directory / "trials.parquet", index=False)
        return frame


def worker(scheduler: str, networks: int, nthreads: int | None = None) -> None:
    """A Dask worker for sweeps on this host: it declares how many networks it holds."""
    from testbed.net.hostlock import MAX_NETWORKS_ENV

    command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads",
               str(nthreads or max(1, networks)), "--nworkers", "1", "--resources", f"{NETWORKS}={networks}",
               "--no-dashboard"]
    subprocess.run(command, check=False, env={**os.environ, MAX_NETWORKS_ENV: str(networks)})
