"""``python -m testbed.dashboard live RUN_DIR | replay RUN_DIR [--trial LABEL] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from testbed.dashboard import serve
from testbed.dashboard.app import create_app


def live_environment(run_dir: Path) -> dict:
    """What the run runs on (as ``environment.json`` will say at its end)."""
    from testbed.runner import environment

    backend = None
    for network in sorted(run_dir.glob("trials/*/*/*/network.json")):
        backend = json.loads(network.read_text()).get("backend")
    return environment(backend)


def follow_parent() -> None:
    """A live dashboard ends with the run that started it, even one killed outright."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.dashboard")
    parser.add_argument("mode", choices=("live", "replay"))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--trial", default=None, help="replay: scenario/planner/repK (default: the first)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args(argv)
    if args.mode == "live":
        follow_parent()
        app = create_app(live_run=args.run_dir, token=os.environ.get("MEC_DASHBOARD_TOKEN"),
                         environment=live_environment(args.run_dir))
    else:
        app = create_app(record=args.run_dir, trial=args.trial)
    serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
