"""Experiment lifecycle: from a validated experiment to a run record.

A run is a set of *trials*: every scenario of the experiment, times every
planner, times ``repeat`` repetitions, each on a fresh network with its own
seed (``derive_seed``), so the trials do not influence one another.  One run
directory ``runs/<time>-<name>/`` holds the effective configuration
(``config.yaml``, itself a valid experiment file: a run can be re-run from its
record), the environment, ``trials.json`` (which trial is which), one
directory per trial (``trials/<scenario>/<planner>/rep<k>/``) and, once
finished, the combined records (Parquet, with ``scenario``, ``planner`` and
``repetition`` columns) and ``summary.json``.  An interrupted run (Ctrl-C,
SIGTERM) is torn down cleanly and marked incomplete.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from testbed import assets, images, ports, records
from testbed.config import ExperimentSpec, PlannerSpec, app_manifest, derive_seed
from testbed.config.experiment import service_name
from testbed.controller.config import ControllerConfig
from testbed.events import EventLog
from testbed.mobility import build as build_mobility
from testbed.net.capture import Capture
from testbed.net.network import MecNetwork
from testbed.radio import HysteresisHandover, PathLoss
from testbed.registry import PLANNERS
from testbed.stack import Stack

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def environment(backend: str | None = None) -> dict:
    """What the run ran on: kernel, link backend, engine and tool versions, CPU, packages."""
    def version(args):
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    from importlib import metadata

    packages = {}
    for name in ("pydantic", "numpy", "pandas", "pyarrow", "matplotlib", "pulp", "highspy", "docker", "networkx"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    try:
        import docker

        engine = docker.from_env(timeout=5).version().get("Version")
    except Exception:
        engine = None
    return {
        "kernel": platform.release(), "machine": platform.machine(), "cpu": cpu,
        "cpus": len([1 for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")]),
        "python": sys.version.split()[0], "link_backend": backend, "docker": engine,
        "criu": version(["criu", "--version"]), "runc": version(["runc", "--version"]),
        "mininet": version(["mn", "--version"]), "packages": packages,
    }


class ControllerLost(RuntimeError):
    """The controller of a trial died before the trial's end; the run is incomplete."""

    def __init__(self, lost: dict):
        self.lost = lost
        moving = f"; still moving at the end: {lost['still_moving']}" if lost.get("still_moving") else ""
        super().__init__(f"the controller of {lost['trial']} exited ({lost['exit']}) at t={lost['t']} s{moving}")


@dataclass
class Trial:
    """One planner on a fresh network, in one scenario, one repetition."""

    scenario: str
    planner: PlannerSpec
    repetition: int
    spec: ExperimentSpec              # the scenario's experiment, with this repetition's seed
    dir: Path

    @property
    def label(self) -> str:
        return f"{self.scenario}/{self.planner.name}/rep{self.repetition}"

    def record(self) -> dict:
        return {"scenario": self.scenario, "planner": self.planner.name, "repetition": self.repetition,
                "seed": self.spec.seed, "dir": str(self.dir)}


class Runner:
    def __init__(self, spec: ExperimentSpec, source: dict, run_root: Path | None = None, progress=None, log=print,
                 dashboard: dict | None = None):
        self.spec = spec
        self.dashboard = dashboard        # {"host", "port"}: serve the live dashboard while the run goes
        self.source = source
        self.run_root = Path(run_root or PROJECT_ROOT / "runs")
        self.progress = progress          # callable(trial label, elapsed, duration) or None
        self.log = log
        self.run_dir: Path | None = None

    def trials(self, run_dir: Path) -> list[Trial]:
        """Every trial of the experiment, in the order they run: repetition by repetition,
        so that an interrupted run has whole rounds of every scenario and planner."""
        variants = self.spec.variants()
        return [Trial(scenario, planner, repetition,
                      spec.model_copy(update={"seed": derive_seed(spec.seed, repetition)}),
                      run_dir / "trials" / scenario / planner.name / f"rep{repetition}")
                for repetition in range(1, self.spec.repeat + 1)
                for scenario, spec in variants.items() for planner in spec.planners]

    def run(self) -> Path:
        records.mark_killed_runs()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_dir = self.run_root / f"{stamp}-{self.spec.name}"
        self.run_dir.mkdir(parents=True, exist_ok=False)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.source, sort_keys=False))
        trials = self.trials(self.run_dir)
        (self.run_dir / "trials.json").write_text(json.dumps([t.record() for t in trials], indent=2))
        self._status("running")
        records.register_active(self.run_dir)
        backend, done, page = None, [], None
        try:
            if self.dashboard is not None:
                from testbed.dashboard import DashboardProcess

                page = DashboardProcess(self.run_dir, **self.dashboard).start()
                self.log(f"dashboard: {page.url}?token={page.token}  (control token: {page.token})")
            for trial in trials:
                backend = self.trial(trial)
                done.append(trial.record())
            (self.run_dir / "environment.json").write_text(json.dumps(environment(backend), indent=2))
            summary = records.finalize(self.run_dir, done)
            self._status("complete", aggregate=summary["aggregate"])
        except BaseException as exc:
            (self.run_dir / "environment.json").write_text(json.dumps(environment(backend), indent=2))
            interrupted = isinstance(exc, KeyboardInterrupt)
            try:
                started = [t.record() for t in trials if t.dir.exists()]
                records.finalize(self.run_dir, started)
            except Exception:  # partial records are best effort; the status says what happened
                pass
            self._status("incomplete", reason="interrupted" if interrupted else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if page is not None:
                page.stop()
            records.unregister_active()
        return self.run_dir

    def _status(self, state: str, **extra) -> None:
        (self.run_dir / "status.json").write_text(json.dumps({"state": state, "time": time.time(), **extra},
                                                             indent=2, default=str))

    # -- one trial ---------------------------------------------------------------
    def trial(self, trial: Trial) -> str:
        spec, planner, trial_dir = trial.spec, trial.planner, trial.dir
        trial_dir.mkdir(parents=True)
        self.log(f"[{trial.label}] building the network")
        net = MecNetwork(spec.topology, workdir=trial_dir / "net", seed=spec.seed)
        with net:
            (trial_dir / "network.json").write_text(json.dumps(net.applied(), indent=2, default=str))
            with Stack(net, trial_dir) as stack:
                cloud = spec.topology.cloud()
                controller_address = net.address(cloud)
                stack.start_agents(controller=f"{controller_address}:{ports.CONTROLLER_RPC}",
                                   monitor_period=spec.monitor_period)
                users = self._initial_users(spec)
                controller = stack.start_controller(self._controller_config(spec, planner, net, trial_dir, users,
                                                                            controller_address))
                self.log(f"[{trial.label}] deploying services")
                endpoints = controller.call("deploy", timeout=900)
                capture = Capture(net, list(spec.users) + spec.topology.servers(), trial_dir) if spec.capture else None
                if capture:
                    capture.start()
                controller.call("start")
                t0 = time.time() + 0.5
                for user in spec.users:
                    stack.start_user(user, self._services_of(spec, user, endpoints), initial_ap=users[user]["ap"],
                                     **self._user_config(spec, user, planner, controller_address, t0))
                self._schedule_load(spec, stack, t0)
                self.log(f"[{trial.label}] running for {spec.duration:g} s")
                lost = None
                while time.time() < t0 + spec.duration:
                    if self.progress:
                        self.progress(trial.label, min(spec.duration, max(0.0, time.time() - t0)), spec.duration)
                    if lost is None and stack.controller_exit() is not None:
                        lost = self._controller_lost(trial, stack, t0)
                    time.sleep(0.25)
                if self.progress:
                    self.progress(trial.label, spec.duration, spec.duration)
                if lost is None:
                    controller.call("settle", timeout=180)      # no migration cut short by the teardown
                else:
                    lost["still_moving"] = stack.settle_agents()
                for user in list(stack.users):
                    stack.stop_user(user)
                if capture:
                    capture.stop()
        if lost is not None:
            raise ControllerLost(lost)
        self.log(f"[{trial.label}] done")
        return net.backend

    def _controller_lost(self, trial: Trial, stack: Stack, t0: float) -> dict:
        """The controller died: the users go on with what they were last told (the services stay
        where they are; a migration under way finishes at its agents), and the trial says so."""
        lost = {"trial": trial.label, "t": round(time.time() - t0, 3), "exit": stack.controller_exit()}
        EventLog(trial.dir / "events.jsonl", "runner").emit("run.controller_lost", **lost)
        self.log(f"[{trial.label}] the controller exited ({lost['exit']}) at t={lost['t']:.1f} s; "
                 "the users go on without it until the trial's end")
        return lost

    def _schedule_load(self, spec: ExperimentSpec, stack: Stack, t0: float) -> None:
        """The experiment's background load, each at its time, through the server's agent."""
        for load in spec.load:
            def start(load=load):
                time.sleep(max(0.0, t0 + load.start - time.time()))
                try:
                    stack.agents[load.server].call("load", share=load.share, duration=load.duration)
                except Exception as exc:        # the run goes on; the record says why the load is missing
                    self.log(f"load on {load.server} failed: {exc}")

            threading.Thread(target=start, daemon=True).start()

    @staticmethod
    def _initial_users(spec: ExperimentSpec) -> dict:
        """Where each user starts, and the base station it hears best there."""
        radio = spec.radio
        policy = HysteresisHandover(radio)
        stations = {ap: spec.topology.nodes[ap].position for ap in spec.topology.nodes_with_role("ap")}
        result = {}
        for name in spec.users:
            position = build_mobility(**spec.mobility_params(name)).position(0.0)
            rssi = PathLoss(radio, spec.seed, user=name).all(stations, position, 0)
            result[name] = {"position": list(position), "ap": policy.best(rssi)}
        return result

    def _controller_config(self, spec: ExperimentSpec, planner: PlannerSpec, net, trial_dir, users,
                           address) -> ControllerConfig:
        services = []
        for user in spec.users:
            for index, use in enumerate(spec.users[user].services):
                services.append({"service": self.service_name(user, index, use.app), "user": user, "app": use.app,
                                 "image": images.image_name(use.app), "cpus": use.cpus,
                                 "memory_mb": int(use.memory / 2**20), "task_bytes": int(assets.task_bytes(use)),
                                 "quota": use.quota, "env": use.env})
        return ControllerConfig.model_validate({
            "run_dir": trial_dir, "address": address, "node": spec.topology.cloud(), "topology": spec.topology,
            "planner": planner, "seed": spec.seed, "radio": spec.radio, "report_period": spec.report_period,
            "monitor_period": spec.monitor_period, "migration": spec.migration, "probe": spec.probe,
            "calibration": spec.calibration, "benchmark_servers": spec.benchmark_servers,
            "agents": {s: net.address(s) for s in spec.topology.servers()}, "users": users, "services": services})

    service_name = staticmethod(service_name)

    def _services_of(self, spec: ExperimentSpec, user: str, endpoints: dict) -> list[dict]:
        result = []
        for index, use in enumerate(spec.users[user].services):
            name = self.service_name(user, index, use.app)
            workload = {"images": [str(assets.fetch(i)) for i in use.images], "payload_bytes": use.payload_bytes,
                        "think_time": use.think_time}
            result.append({"service": name, "app": use.app, "endpoint": endpoints[name], "workload": workload,
                           "min_timeout": app_manifest(use.app).timeout})
        return result

    @staticmethod
    def _user_config(spec: ExperimentSpec, user: str, planner: PlannerSpec, controller: str, t0: float) -> dict:
        return {"mobility": spec.mobility_params(user), "radio": spec.radio,
                "seed": spec.seed, "handover": PLANNERS.get(planner.name).handover,
                "controller": [controller, ports.CONTROLLER_RPC], "t0": t0,
                "report_period": spec.report_period, "probe_interval": spec.probe_interval}
