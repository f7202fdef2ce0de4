"""The dashboard's web application (Starlette): one page, its data, and the operator's controls.

* ``GET /``: the page; ``/static/``: its script and style, and plotly.js from the installed
  ``plotly`` package (nothing is fetched from the internet).
* ``GET /api/stream`` (live): server-sent events, a batch of items every 100 ms; the first
  message holds the trial's description and its last two minutes.
* ``GET /api/timeline`` (replay): the description and every item of the chosen trial.
* ``POST /api/control`` (live): an operator's order, passed to the controller's ``operate``;
  refused (403) without the run's token in ``X-Token``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from testbed.controller.controller import management_socket
from testbed.dashboard.feed import LiveFeed, RecordFeed, TrialInfo
from testbed.rpc import RpcClient, RpcError

STATIC = Path(__file__).with_name("static")
PERIOD_S = 0.1


def plotly_js() -> Path:
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class Live:
    """A run under way: polls its record every ``PERIOD_S`` and fans the new items out."""

    def __init__(self, run_dir: Path, token: str | None, environment: dict | None = None):
        self.feed = LiveFeed(run_dir)
        self.token = token
        self.environment = environment or {}
        self.subscribers: set[asyncio.Queue] = set()
        self.info: dict | None = None

    def _info(self) -> dict | None:
        if self.feed.trial is None:
            return None
        network = Path(self.feed.trial["dir"]) / "network.json"
        environment = dict(self.environment)
        if network.exists():
            environment["link_backend"] = json.loads(network.read_text()).get("backend")
        info = TrialInfo(self.feed.run_dir, self.feed.trial).as_dict("live", environment)
        return {**info, "control": True}

    async def pump(self) -> None:
        while True:
            items = await asyncio.to_thread(self.feed.poll)
            if any(item["k"] == "trial" for item in items):
                self.info = await asyncio.to_thread(self._info)
            if items:
                message = _dumps({"items": items, "sent": time.time(),
                                  **({"info": self.info} if items[0]["k"] == "trial" else {})})
                for queue in list(self.subscribers):
                    if queue.qsize() < 100:        # a page that stopped reading is not waited for
                        queue.put_nowait(message)
            await asyncio.sleep(PERIOD_S)

    async def stream(self, request: Request) -> StreamingResponse:
        queue: asyncio.Queue = asyncio.Queue()
        self.subscribers.add(queue)
        first = _dumps({"info": self.info, "items": self.feed.snapshot(), "sent": time.time()})

        async def events():
            try:
                yield f"data: {first}\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {message}\n\n"
            finally:
                self.subscribers.discard(queue)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def _controller(self) -> RpcClient:
        trial = self.feed.trial
        socket = management_socket()
        if trial is not None:
            config = Path(trial["dir"]) / "controller.json"
            try:
                socket = json.loads(config.read_text()).get("management") or socket
            except (OSError, ValueError):
                pass
        return RpcClient(socket, timeout=10.0, connect_timeout=2.0)

    async def control(self, request: Request) -> JSONResponse:
        given = request.headers.get("x-token", "")
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return JSONResponse({"ok": False, "error": "refused: this action needs the run's token"}, status_code=403)
        try:
            order = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "error": "the body is not JSON"}, status_code=400)
        if not isinstance(order, dict) or not isinstance(order.get("action"), str):
            return JSONResponse({"ok": False, "error": "the body needs an 'action'"}, status_code=400)

        def call():
            client = self._controller()
            try:
                return client.call("operate", **order)
            finally:
                client.close()

        try:
            result = await asyncio.to_thread(call)
        except RpcError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        except OSError as exc:
            return JSONResponse({"ok": False, "error": f"no controller to reach ({exc})"}, status_code=409)
        return JSONResponse(result)


def create_app(live_run: Path | None = None, record: Path | None = None, trial: str | None = None,
               token: str | None = None, environment: dict | None = None) -> Starlette:
    """The live dashboard of the run writing to ``live_run``, or the replay of ``record``."""
    if (live_run is None) == (record is None):
        raise ValueError("a dashboard shows either a live run or a record")
    routes = [Route("/", lambda request: FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})),
              Route("/static/vendor/plotly.min.js", lambda request: FileResponse(plotly_js())),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    lifespan = None
    if live_run is not None:
        live = Live(Path(live_run), token, environment)

        async def stream(request):
            return await live.stream(request)

        async def control(request):
            return await live.control(request)

        routes += [Route("/api/stream", stream), Route("/api/control", control, methods=["POST"]),
                   Route("/api/mode", lambda request: JSONResponse({"mode": "live"}))]

        @asynccontextmanager
        async def lifespan(app):
            task = asyncio.create_task(live.pump())
            yield
            task.cancel()
    else:
        feed = RecordFeed(Path(record), trial)
        environment_path = Path(record) / "environment.json"
        saved = json.loads(environment_path.read_text()) if environment_path.exists() else {}
        timeline = _dumps({"info": {**TrialInfo(feed.run_dir, feed.trial).as_dict("replay", saved),
                                    "control": False, "trials": feed.labels},
                           "items": feed.items()})

        async def refused(request):
            return JSONResponse({"ok": False, "error": "refused: a replay is read-only"}, status_code=403)

        routes += [Route("/api/timeline", lambda request: Response(timeline, media_type="application/json")),
                   Route("/api/control", refused, methods=["POST"]),
                   Route("/api/mode", lambda request: JSONResponse({"mode": "replay"}))]
    return Starlette(routes=routes, lifespan=lifespan)
