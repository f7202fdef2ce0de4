"""The virtual mobile user as a process inside its namespace.

It owns its radio (which base station it is attached to), its offloading
clients (one per service it uses) and, when configured, its mobility, radio
measurements, handover policy and Local Monitor.  The runner (outside the
emulated network) manages it through a Unix socket; the controller is reached
over the emulated network like from a real device.

    python -m testbed.mu CONFIG.json
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from testbed.events import EventLog
from testbed.mu.client import OffloadingClient, Workload
from testbed.mu.radio_link import RadioLink, RadioPort
from testbed.rpc import RpcServer

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
        run_dir = Path(config["run_dir"]) if config.get("run_dir") else None
        self.events = EventLog(run_dir / "events.jsonl" if run_dir else None, f"mu:{self.name}")
        ports = {ap: RadioPort(ap=ap, **port) for ap, port in config["radio_ports"].items()}
        self.clients: dict[str, OffloadingClient] = {}
        self.radio = RadioLink(ports, on_down=self._link_down, on_up=self._link_up)
        for service in config.get("services", []):
            log = run_dir / f"requests-{self.name}.jsonl" if run_dir else None
            client = OffloadingClient(self.name, service["service"], load_workload(service.get("workload", {})),
                                      log, probe_interval=float(config.get("probe_interval", 0.010)),
                                      min_timeout=float(service.get("min_timeout", 0.5)),
                                      ap_of=lambda: self.radio.current)
            if service.get("endpoint"):
                client.set_endpoints(current=service["endpoint"])
            self.clients[service["service"]] = client
        self._stopped = threading.Event()

    def _link_down(self):
        for client in self.clients.values():
            client.interrupt()

    def _link_up(self, ap):
        pass

    # -- management API ------------------------------------------------------------
    def status(self) -> dict:
        return {"user": self.name, "ap": self.radio.current, "in_handover": self.radio.in_handover,
                "clients": {s: {**c.stats, "rid": c.rid, "last_counter": c.last_counter, **c.endpoints()}
                            for s, c in self.clients.items()}}

    def set_endpoints(self, service: str, current=None, pending=None) -> dict:
        self.clients[service].set_endpoints(current=current, pending=pending)
        self.events.emit("client.endpoints", service=service, current=current, pending=pending)
        return self.clients[service].endpoints()

    def attach(self, ap: str) -> str:
        self.radio.up(ap)
        self.events.emit("radio.attached", ap=ap)
        return ap

    def handover(self, ap: str, duration: float | None = None) -> dict:
        duration = float(self.config.get("handover_time", 0.5) if duration is None else duration)
        self.events.emit("handover.start", source=self.radio.current, target=ap, duration=duration)
        record = self.radio.handover(ap, duration)
        self.events.emit("handover.end", **record)
        return record

    def start_clients(self) -> bool:
        for client in self.clients.values():
            if not client.is_alive():
                client.start()
        return True

    def stop(self) -> bool:
        for client in self.clients.values():
            client.stop()
        for client in self.clients.values():
            if client.is_alive():
                client.join(timeout=5)
        self._stopped.set()
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
        user.start_clients()
    user.events.emit("mu.ready", ap=user.radio.current)
    user.wait()
    time.sleep(0.1)  # let the last management reply leave
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
