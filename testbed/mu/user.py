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
* one *offloading client* per service (``testbed.mu.offloading``).

Ticks are taken at fixed experiment times (k x tick), so the sequence of
positions, RSSI samples and the user's own handover decisions is the same in
every run with the same seed.  The runner manages the process through a Unix
socket (``MobileUser.REMOTE``).

    python -m testbed.mu CONFIG.json        # a UserConfig, written by Stack
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path

from testbed import mobility
from testbed.events import EventLog
from testbed.mu.airtime import Attachments, RateShaper
from testbed.mu.config import UserConfig, WorkloadConfig
from testbed.mu.offloading import OffloadingClient, Workload
from testbed.mu.radio_link import RadioLink, RadioPort
from testbed.net.namespaces import network_socket, network_state
from testbed.radio import PathLoss, handover_rule
from testbed.rpc import RpcClient, RpcError


def management_socket(user: str) -> str:
    return network_socket("users", user)


def load_workload(spec: WorkloadConfig) -> Workload:
    """The payloads themselves: the test images' bytes, or ``payload_bytes`` bytes."""
    payloads = [Path(path).read_bytes() for path in spec.images] if spec.images else [b"x" * spec.payload_bytes]
    return Workload(payloads=payloads, op=spec.op, think_time=spec.think_time, extra=spec.extra)


class MobileUser:
    """Management API (over the Unix socket) and the parts of the user."""

    # What the runner may call; anything else is refused.
    REMOTE = ("status", "set_endpoints", "attach", "handover", "start", "stop")

    def __init__(self, config: UserConfig):
        self.config = config
        self.name = config.user
        self.run_dir = config.run_dir
        self.events = EventLog(self.run_dir / "events.jsonl" if self.run_dir else None, f"mu:{self.name}")
        ports = {ap: RadioPort(ap=ap, **port.model_dump()) for ap, port in config.radio_ports.items()}
        self.radio = RadioLink(ports, on_down=self._link_down, on_up=self._link_up)
        self.params = config.radio
        self.path_loss = PathLoss(self.params, seed=config.seed, user=self.name)
        self.policy = handover_rule(self.params)
        self.attachments = Attachments(config.attachments or (self.run_dir / "radio" if self.run_dir
                                                               else network_state() / "radio"))
        self.shaper = RateShaper(self.name, self.params.rates(), self.attachments, config.capacities,
                                 self.events.emit) if self.params.link_rate == "rssi" else None
        self._lost: dict | None = None      # where and when coverage ended, until it returns
        self._told_pending: dict[str, list] = {}   # where the controller last said each service is going
        self.stations = {ap: tuple(p) for ap, p in config.stations.items()}
        self.model = mobility.build(**config.mobility) if config.mobility else None
        self.decides_handover = config.handover == "rssi"
        self.tick = config.tick
        self.t0 = config.t0 or time.time()
        self.clients: dict[str, OffloadingClient] = {}
        self.recent_e2e: dict[str, collections.deque] = {}     # (E2E, processing) of the last replies
        self.replies: dict[str, collections.deque] = {}         # when each reply of the last window came
        for service in config.services:
            name = service.service
            self.recent_e2e[name] = collections.deque(maxlen=50)
            self.replies[name] = collections.deque()
            client = OffloadingClient(
                self.name, name, load_workload(service.workload),
                self.run_dir / f"requests-{self.name}.jsonl" if self.run_dir else None,
                probe_interval=config.probe_interval, min_timeout=service.min_timeout,
                ap_of=lambda: self.radio.current, app=service.app,
                on_reply=lambda e2e, header, name=name: self._on_reply(name, e2e, header))
            if service.endpoint:
                client.set_endpoints(current=list(service.endpoint))
            self.clients[name] = client
        self.controller = RpcClient(tuple(config.controller), timeout=2.0, connect_timeout=1.0) \
            if config.controller else None
        self.state = {"position": None, "rssi": {}, "sim_t": 0.0}
        self._handover_lock = threading.Lock()
        self._stopped = threading.Event()
        self._walking = threading.Event()      # cleared while an operator holds the user still
        self._walking.set()
        self._started = False
        self._started_at: float | None = None
        self._mobility_log = open(self.run_dir / f"mobility-{self.name}.jsonl", "a", buffering=1) \
            if self.run_dir and self.model else None

    RATE_WINDOW_S = 10.0

    def _on_reply(self, service: str, e2e_ms: float, header: dict) -> None:
        self.recent_e2e[service].append((e2e_ms, header.get("proc_ms", 0)))
        now = time.monotonic()
        window = self.replies[service]
        window.append(now)
        while window and window[0] < now - self.RATE_WINDOW_S:
            window.popleft()

    def _task_rates(self) -> dict[str, float]:
        """Tasks answered per second over the last window, per service (eq. 1's n-hat)."""
        now = time.monotonic()
        span = min(self.RATE_WINDOW_S, max(1e-3, now - self._started_at)) if self._started_at else None
        return {s: round(sum(1 for t in w if t >= now - self.RATE_WINDOW_S) / span, 3)
                for s, w in self.replies.items() if span}

    # -- radio ---------------------------------------------------------------------
    def _link_down(self, ap: str | None):
        cause = "out of coverage" if self._lost else "radio link down"
        if ap is not None:
            self.attachments.detach(ap, self.name)
            if self.shaper:
                self.shaper.applied.pop(ap, None)
        for client in self.clients.values():
            client.interrupt(cause)
        if self.controller is not None:
            self.controller.close()  # its connection used the old link's address

    def _link_up(self, ap: str) -> None:
        self.attachments.attach(ap, self.name)
        self._shape(ap, self.state["rssi"] or self._initial_rssi())

    def _initial_rssi(self) -> dict[str, float]:
        if self.model is None:
            return {}
        return self.path_loss.all(self.stations, self.model.position(0.0), sample=0)

    def _shape(self, ap: str, rssi: dict[str, float]) -> None:
        """The link to ``ap`` at the rate this user's SNR and the station's other users allow."""
        if self.shaper is None or ap not in rssi:
            return
        try:
            self.shaper.update(self.radio.ports[ap], rssi[ap])
        except (RuntimeError, OSError) as exc:
            self.events.emit("radio.rate_failed", user=self.name, ap=ap, error=str(exc))

    def _lose_coverage(self, serving: str, sim_t: float, rssi: dict[str, float]) -> None:
        """No base station is heard: the radio goes down until one is (the user gets no service)."""
        self._lost = {"from": serving, "start": time.time()}
        self.events.emit("radio.lost", user=self.name, ap=serving, cause="out of coverage", sim_t=round(sim_t, 4),
                         rssi={ap: round(v, 2) for ap, v in rssi.items()})
        self.radio.down()

    def _regain_coverage(self, target: str, sim_t: float) -> None:
        lost, self._lost = self._lost, None
        self.attach(target)
        if lost is None:
            return
        record = {"from": lost["from"], "to": target, "start": lost["start"], "end": time.time()}
        self.events.emit("radio.regained", user=self.name, sim_t=round(sim_t, 4),
                         downtime_s=round(record["end"] - record["start"], 4), **record)
        if self.controller is not None and target != lost["from"]:
            threading.Thread(target=self._notify_handover, args=(record, "coverage"), daemon=True).start()

    def _do_handover(self, target: str, duration: float, reason: str, sim_t: float | None) -> dict | None:
        if not self._handover_lock.acquire(blocking=False):
            return None  # one at a time
        try:
            source = self.radio.current
            if target == source:
                return None
            started = time.time()
            self.events.emit("handover.start", user=self.name, source=source, target=target, reason=reason,
                             duration=duration, sim_t=sim_t)
            if self.controller is not None and reason != "commanded":
                self._notify_start(source, target, reason, started)
            record = self.radio.handover(target, duration, started=started)
            self.events.emit("handover.end", user=self.name, reason=reason, sim_t=sim_t, **record)
            if self.controller is not None and reason != "commanded":
                threading.Thread(target=self._notify_handover, args=(record, reason), daemon=True).start()
            return record
        finally:
            self._handover_lock.release()

    NOTICE_FLIGHT_S = 0.005    # a notice's frame leaves the radio interface well within this

    def _notify_start(self, source, target, reason: str, started: float) -> None:
        """Tell the controller the handover begins, before the radio goes down (the
        network sees the disassociation), so a planner can start pre-migration at once."""
        try:
            self.controller.notify("handover_started", user=self.name, source=source, target=target,
                                   reason=reason, start=started)
            time.sleep(self.NOTICE_FLIGHT_S)
        except (RpcError, OSError):
            self.events.emit("handover.notice_failed", user=self.name, target=target)

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
            if not self._walking.is_set():
                held = time.time()
                while not self._walking.wait(0.05):
                    if self._stopped.is_set():
                        return
                self.t0 += time.time() - held          # the path resumes where it stopped
            wake = self.t0 + k * self.tick
            delay = wake - time.time()
            if delay > 0 and self._stopped.wait(delay):
                return
            sim_t = k * self.tick
            position = self.model.position(sim_t)
            rssi = self.path_loss.all(self.stations, position, sample=k)
            self.state = {"position": position, "rssi": rssi, "sim_t": sim_t,
                          "velocity": self.model.velocity(sim_t)}
            if not self.radio.in_handover:
                serving = self.radio.current
                action = self.policy.action(serving, rssi, sim_t, user_decides=self.decides_handover)
                kind, target = action or (None, None)
                if kind == "lost":
                    self._lose_coverage(serving, sim_t, rssi)
                elif kind == "attach":
                    self._regain_coverage(target, sim_t)
                elif kind is None and serving is not None:
                    self._shape(serving, rssi)
                elif kind in ("handover", "forced"):
                    reason = "rssi" if kind == "handover" else "lost_signal"
                    self.events.emit("handover.triggered", user=self.name, source=serving, target=target,
                                     reason=reason, sim_t=round(sim_t, 4),
                                     rssi={ap: round(v, 2) for ap, v in rssi.items()})
                    threading.Thread(target=self._do_handover,
                                     args=(target, self.params.handover_time, reason, round(sim_t, 4)),
                                     daemon=True).start()
            if self._mobility_log:
                current = self.radio.current
                self._mobility_log.write(json.dumps({
                    "t": round(time.time(), 4), "sim_t": round(sim_t, 4), "x": round(position[0], 4),
                    "y": round(position[1], 4), "ap": current,
                    "rssi": {ap: round(v, 3) for ap, v in rssi.items()},
                    "mbps": round(self.shaper.applied[current], 3) if self.shaper and current in self.shaper.applied
                    else None}) + "\n")
            k += 1

    # -- the Local Monitor ---------------------------------------------------------------
    def _report(self) -> None:
        period = self.config.report_period
        while not self._stopped.wait(period):
            if self.radio.in_handover or self.radio.current is None:
                continue
            state = self.state
            usable = self.policy.usable(state["rssi"])
            delays = {s: round(sum(e for e, _ in d) / len(d), 3) for s, d in self.recent_e2e.items() if d}
            rates = self._task_rates()
            processing = {s: round(sum(p for _, p in d) / len(d), 3) for s, d in self.recent_e2e.items() if d}
            try:
                reply = self.controller.call(
                    "report", user=self.name, t=time.time(), sim_t=state["sim_t"], position=state["position"],
                    velocity=state.get("velocity"), ap=self.radio.current,
                    rssi={ap: round(v, 2) for ap, v in usable.items()}, e2e_ms=delays, proc_ms=processing,
                    task_rate=rates)
            except (RpcError, OSError):
                continue
            self._apply(reply)

    def _apply(self, reply: dict | None) -> None:
        """Act on the controller's answer: where services are, and any handover to make."""
        if not reply:
            return
        for service, where in (reply.get("services") or {}).items():
            if service in self.clients:
                self.clients[service].set_endpoints(current=where.get("endpoint"), pending=where.get("pending"),
                                                    version=where.get("version"))
                pending = [list(p) for p in where.get("pending") or []]
                if pending and pending != self._told_pending.get(service):
                    self.events.emit("mu.pending", user=self.name, service=service, pending=pending)
                self._told_pending[service] = pending
        order = reply.get("handover")
        if order and order.get("target") and order["target"] != self.radio.current:
            self.schedule_handover(order["target"], order.get("at"))
        paused = bool(reply.get("paused"))
        if paused == self._walking.is_set():
            (self._walking.clear if paused else self._walking.set)()
            self.events.emit("user.paused" if paused else "user.resumed", user=self.name,
                             sim_t=round(self.state["sim_t"], 4))

    def schedule_handover(self, target: str, at: float | None = None, duration: float | None = None) -> None:
        duration = self.params.handover_time if duration is None else duration

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
        duration = self.params.handover_time if duration is None else float(duration)
        if at is not None:
            self.schedule_handover(ap, at, duration)
            return None
        return self._do_handover(ap, duration, "commanded", None)

    def start(self) -> bool:
        self._started = True
        self._started_at = time.monotonic()
        if self.model is not None:
            threading.Thread(target=self._move, name="mover", daemon=True).start()
        if self.controller is not None:
            threading.Thread(target=self._report, name="monitor", daemon=True).start()
        if self.radio.current is not None:
            self._start_clients()
        return True

    def stop(self) -> bool:
        self._stopped.set()
        if self.radio.current is not None:
            self.attachments.detach(self.radio.current, self.name)
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
