"""``python -m testbed.controller CONFIG.json``: run the central controller until stopped."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from testbed.controller.config import ControllerConfig
from testbed.controller.controller import Controller, management_socket
from testbed.rpc import RpcServer


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    config = ControllerConfig.model_validate_json(Path(argv[0]).read_text())
    controller = Controller(config)
    network = RpcServer((config.address, config.port), controller, Controller.REMOTE, events=controller.events)
    management = RpcServer(config.management or management_socket(), controller, Controller.REMOTE,
                           events=controller.events)
    network.serve_in_thread()
    management.serve_in_thread()
    signal.signal(signal.SIGTERM, lambda *_: controller.stop())
    controller.events.emit("controller.ready", planner=controller.planner.name, address=config.address)
    controller.wait()
    time.sleep(0.1)
    network.shutdown()
    management.shutdown()
    controller.db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
