"""A live dashboard of a run, and the replay of a finished one, in the browser.

``testbed run FILE --dashboard`` starts ``DashboardProcess`` next to the run (its own
process: a slow page never slows the run, and its cost is measured on its own);
``testbed dashboard RUN`` replays a record.  The page is ``static/index.html``; its data
come from ``feed`` (the run record's files), its controls go through the controller.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def serve(app, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=1)


class DashboardProcess:
    """``python -m testbed.dashboard live RUN_DIR`` while a run goes (the token that the
    controls need is made here and given to it in its environment), or ``replay``."""

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 8050, token: str | None = None,
                 mode: str = "live"):
        self.run_dir, self.host, self.port, self.mode = Path(run_dir), host, port, mode
        self.token = token or secrets.token_urlsafe(16)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 20.0) -> "DashboardProcess":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "testbed.dashboard", self.mode, str(self.run_dir), "--host", self.host,
             "--port", str(self.port)], env={**os.environ, "MEC_DASHBOARD_TOKEN": self.token},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"the dashboard did not start: {error[-800:]}")
            try:
                with urllib.request.urlopen(self.url + "api/mode", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the dashboard did not answer on {self.url} within {timeout:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
