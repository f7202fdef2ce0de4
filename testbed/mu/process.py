"""The virtual mobile user as a process inside its namespace (seed 002, Fig. 1, "MU").

Parts, each a thread:

* the *mover*: every ``tick`` of experiment time it moves the user along its
  mobility model, samples the RSSI of every base station from the path-loss
  model, logs both, and (when the user decides its own handovers) hands over
  by relative hysteresis;
* the *Local Monitor*: every ``report_period`` it reports position, velocity,
  RSSI of the usable base stations and recent E2E delays to the controller,
  over the emulated network; the reply tells it where its services are (and
  where they are about to be) and may command a handover at a given time;
* one *offloading client* per service (``testbed.mu.client``).

Ticks are taken at fixed experiment times (k x tick), so the sequence of
positions, RSSI samples and the user's own handover decisions is the same in
every run with the same seed.  The runner manages the process through a Unix
socket (``status``, ``handover``, ``set_endpoints``, ``stop``).

    python -m testbed.mu CONFIG.json
"""

from __future__ import annotations

import collections
import json
import signal
import sys
import threading
import time
from pathlib import Path

from testbed import mobility
from testbed.events import EventLog
from testbed.mu.client import OffloadingClient, Workload
from testbed.mu.radio_link import RadioLink, RadioPort
from testbed.radio import HysteresisHandover, PathLoss, RadioParams
from testbed.rpc import RpcClient, RpcError, RpcServer

MANAGEMENT_DIR = Path("/run/mec-testbed/users")


def management_socket(user: str) -> str:
    MANAGEMENT_DIR.mkdir(parents=True, exist_ok=True)
    return str(MANAGEMENT_DIR / f"{user}.sock")


def load_workload(spec: dict) -> Workload:
    """{"payload_bytes": 16} or {"images": [paths]}, plus optional op/think_time/extra."""
    if spec.get("images"):
        payloads = [Path(path).read_bytes() for path in spec["images"]]
    else:
        payloads = [b"x" * int(spec.get("payload_bytes", 16))]
    return Workload(payloads=payloads, op=spec.get("op", "task"), think_time=float(spec.get("think_time", 0.0)),
                    extra=spec.get("extra", {}))


class MobileUser:
    """Management API (over the Unix socket) and the parts of the user."""

    def __init__(self, config: dict):
        self.config = config
        self.name = config["user"]
        self.run_dir = Path(config["run_dir"]) if config.get("run_dir") else None
        self.events = EventLog(self.run_dir / "events.jsonl" if self.run_dir else None, f"mu:{self.name}")
        ports = {ap: RadioPort(ap=ap, **port) for ap, port in config["radio_ports"].items()}
        self.radio = RadioLink(ports, on_down=self._link_down)
        self.params = RadioParams(**config.get("radio", {}))
        self.path_loss = PathLoss(self.params, seed=int(config.get("seed", 0)))
        self.policy = HysteresisHandover(self.params)
        self.stations = {ap: tuple(p) for ap, p in config.get("stations", {}).items()}
        self.model = mobility.build(**config["mobility"]) if config.get("mobility") else None
        self.decides_handover = config.get("handover", "rssi") == "rssi"
        self.tick = float(config.get("tick", 0.1))
        self.t0 = float(config.get("t0") or time.time())
        self.clients: dict[str, OffloadingClient] = {}
        self.recent_e2e: dict[str, collections.deque] = {}
        for service in config.get("services", []):
            name = service["service"]
            self.recent_e2e[name] = collections.deque(maxlen=50)
            client = OffloadingClient(
                self.name, name, load_workload(service.get("workload", {})),
                self.run_dir / f"requests-{self.name}.jsonl" if self.run_dir else None,
                probe_interval=float(config.get("probe_interval", 0.010)),
                min_timeout=float(service.get("min_timeout", 0.5)), ap_of=lambda: self.radio.current,
                on_reply=lambda e2e, header, name=name: self.recent_e2e[name].append((e2e, header.get("proc_ms", 0))))
            if service.get("endpoint"):
                client.set_endpoints(current=service["endpoint"])
            self.clients[name] = client
        self.controller = RpcClient(tuple(config["controller"]), timeout=2.0, connect_timeout=1.0) \
            if config.get("controller") else None
        self.state = {"position": None, "rssi": {}, "sim_t": 0.0}
        self._handover_lock = threading.Lock()
        self._stopped = threading.Event()
        self._started = False
        self._mobility_log = open(self.run_dir / f"mobility-{self.name}.jsonl", "a", buffering=1) \
            if self.run_dir and self.model else None

    # -- radio ---------------------------------------------------------------------
    def _link_down(self):
        for client in self.clients.values():
            client.interrupt()
        if self.controller is not None:
            self.controller.close()  # its connection used the old link's address

    def _do_handover(self, target: str, duration: float, reason: str, sim_t: float | None) -> dict | None:
        if not self._handover_lock.acquire(blocking=False):
            return None  # one at a time
        try:
            source = self.radio.current
            if target == source:
                return None
            self.events.emit("handover.start", user=self.name, source=source, target=target, reason=reason,
                             duration=duration, sim_t=sim_t)
            record = self.radio.handover(target, duration)
            self.events.emit("handover.end", user=self.name, reason=reason, sim_t=sim_t, **record)
            if self.controller is not None and reason != "commanded":
                threading.Thread(target=self._notify_handover, args=(record, reason), daemon=True).start()
            return record
        finally:
            self._handover_lock.release()

    def _notify_handover(self, record: dict, reason: str) -> None:
        try:
            reply = self.controller.call("handover_done", user=self.name, reason=reason, **record)
            self._apply(reply)
        except (RpcError, OSError):
            pass

    # -- the mover ----------------------------------------------------------------------
    def _move(self) -> None:
        k = 0
        while not self._stopped.is_set():
            wake = self.t0 + k * self.tick
            delay = wake - time.time()
            if delay > 0 and self._stopped.wait(delay):
                return
            sim_t = k * self.tick
            position = self.model.position(sim_t)
            rssi = self.path_loss.all(self.stations, position, sample=k)
            self.state = {"position": position, "rssi": rssi, "sim_t": sim_t,
                          "velocity": self.model.velocity(sim_t)}
            if self._mobility_log:
                self._mobility_log.write(json.dumps({
                    "t": round(time.time(), 4), "sim_t": round(sim_t, 4), "x": round(position[0], 4),
                    "y": round(position[1], 4), "ap": self.radio.current,
                    "rssi": {ap: round(v, 3) for ap, v in rssi.items()}}) + "\n")
            if not self.radio.in_handover:
                serving = self.radio.current
                target = self.policy.decide(serving, rssi)
                forced = serving is not None and rssi.get(serving, -1e9) < self.params.sensitivity_dbm
                if target and serving is None:
                    self.attach(target)
                elif target and (self.decides_handover or forced):
                    reason = "rssi" if self.decides_handover else "lost_signal"
                    self.events.emit("handover.triggered", user=self.name, source=serving, target=target,
                                     reason=reason, sim_t=round(sim_t, 4),
                                     rssi={ap: round(v, 2) for ap, v in rssi.items()})
                    threading.Thread(target=self._do_handover,
                                     args=(target, self.params.handover_time_s, reason, round(sim_t, 4)),
                                     daemon=True).start()
            k += 1

    # -- the Local Monitor ---------------------------------------------------------------
    def _report(self) -> None:
        period = float(self.config.get("report_period", 0.5))
        while not self._stopped.wait(period):
            if self.radio.in_handover or self.radio.current is None:
                continue
            state = self.state
            usable = self.policy.usable(state["rssi"])
            delays = {s: round(sum(e for e, _ in d) / len(d), 3) for s, d in self.recent_e2e.items() if d}
            processing = {s: round(sum(p for _, p in d) / len(d), 3) for s, d in self.recent_e2e.items() if d}
            try:
                reply = self.controller.call(
                    "report", user=self.name, t=time.time(), sim_t=state["sim_t"], position=state["position"],
                    velocity=state.get("velocity"), ap=self.radio.current,
                    rssi={ap: round(v, 2) for ap, v in usable.items()}, e2e_ms=delays, proc_ms=processing)
            except (RpcError, OSError):
                continue
            self._apply(reply)

    def _apply(self, reply: dict | None) -> None:
        """Act on the controller's answer: where services are, and any handover to make."""
        if not reply:
            return
        for service, where in (reply.get("services") or {}).items():
            if service in self.clients:
                self.clients[service].set_endpoints(current=where.get("endpoint"), pending=where.get("pending"))
        order = reply.get("handover")
        if order and order.get("target") and order["target"] != self.radio.current:
            self.schedule_handover(order["target"], order.get("at"))

    def schedule_handover(self, target: str, at: float | None = None, duration: float | None = None) -> None:
        duration = self.params.handover_time_s if duration is None else duration

        def later():
            if at is not None:
                self._stopped.wait(max(0.0, at - time.time()))
            if not self._stopped.is_set():
                self._do_handover(target, duration, "commanded", None)

        threading.Thread(target=later, daemon=True).start()

    # -- management API ------------------------------------------------------------
    def status(self) -> dict:
        return {"user": self.name, "ap": self.radio.current, "in_handover": self.radio.in_handover,
                "position": self.state["position"], "sim_t": self.state["sim_t"],
                "clients": {s: {**c.stats, "rid": c.rid, "last_counter": c.last_counter, **c.endpoints()}
                            for s, c in self.clients.items()}}

    def set_endpoints(self, service: str, current=None, pending=None) -> dict:
        self.clients[service].set_endpoints(current=current, pending=pending)
        self.events.emit("client.endpoints", service=service, current=current, pending=pending)
        return self.clients[service].endpoints()

    def attach(self, ap: str) -> str:
        self.radio.up(ap)
        self.events.emit("radio.attached", user=self.name, ap=ap)
        if self._started:
            self._start_clients()
        return ap

    def _start_clients(self) -> None:
        """The user starts offloading once it has a base station."""
        for client in self.clients.values():
            if not client.is_alive():
                client.start()

    def handover(self, ap: str, duration: float | None = None, at: float | None = None) -> dict | None:
        """Hand over now (and return the record), or at wall time ``at`` (returns None)."""
        duration = self.params.handover_time_s if duration is None else float(duration)
        if at is not None:
            self.schedule_handover(ap, at, duration)
            return None
        return self._do_handover(ap, duration, "commanded", None)

    def start(self) -> bool:
        self._started = True
        if self.model is not None:
            threading.Thread(target=self._move, name="mover", daemon=True).start()
        if self.controller is not None:
            threading.Thread(target=self._report, name="monitor", daemon=True).start()
        if self.radio.current is not None:
            self._start_clients()
        return True

    def stop(self) -> bool:
        self._stopped.set()
        for client in self.clients.values():
            client.stop()
        for client in self.clients.values():
            if client.is_alive():
                client.join(timeout=5)
        if self._mobility_log:
            self._mobility_log.close()
        return True

    def wait(self):
        self._stopped.wait()


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    config = json.loads(Path(argv[0]).read_text())
    user = MobileUser(config)
    server = RpcServer(management_socket(user.name), user)
    server.serve_in_thread()
    signal.signal(signal.SIGTERM, lambda *_: user.stop())
    if config.get("initial_ap"):
        user.attach(config["initial_ap"])
    if config.get("autostart", True):
        user.start()
    user.events.emit("mu.ready", user=user.name, ap=user.radio.current)
    user.wait()
    time.sleep(0.1)  # let the last management reply leave
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
