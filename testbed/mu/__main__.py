"""``python -m testbed.mu CONFIG.json``: run the virtual mobile user until stopped."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from testbed.mu.config import UserConfig
from testbed.mu.user import MobileUser, management_socket
from testbed.rpc import RpcServer


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    config = UserConfig.model_validate_json(Path(argv[0]).read_text())
    user = MobileUser(config)
    server = RpcServer(management_socket(user.name), user, MobileUser.REMOTE, events=user.events)
    server.serve_in_thread()
    signal.signal(signal.SIGTERM, lambda *_: user.stop())
    if config.initial_ap:
        user.attach(config.initial_ap)
    if config.autostart:
        user.start()
    user.events.emit("mu.ready", user=user.name, ap=user.radio.current)
    user.wait()
    time.sleep(0.1)  # let the last management reply leave
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
