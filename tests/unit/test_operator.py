"""The operator's orders (the dashboard's controls) as the controller checks and applies them."""

from pathlib import Path

import pytest

from testbed.config import load_experiment
from testbed.controller.config import ControllerConfig
from testbed.controller.controller import Controller
from testbed.controller.state import Service
from testbed.rpc import RpcError

ROOT = Path(__file__).resolve().parents[2]


def controller_config(tmp_path, planner="nearest", network=None, **fields) -> ControllerConfig:
    """The default experiment's controller config (``network``: settings to change, ``fields``:
    more of the config's own)."""
    spec = load_experiment(ROOT / "experiments" / "default.yaml")
    topology = spec.topology
    if network:
        topology = topology.model_copy(update={"network": topology.network.model_copy(update=network)})
    return ControllerConfig.model_validate({
        "run_dir": tmp_path, "address": "127.0.0.1", "node": "cloud", "topology": topology,
        "planner": {"name": planner}, "radio": spec.radio, "calibration": spec.calibration,
        "agents": {server: "127.0.0.1" for server in topology.servers()},
        "users": {"mu": {"ap": "ap1", "position": [0, 5]}}, **fields})


@pytest.fixture
def controller(tmp_path):
    controller = Controller(controller_config(tmp_path))
    controller.state.services["counter-mu"] = Service("counter-mu", "mu", "counter", "edge1", cpus=1, memory_mb=512)
    controller.endpoints["counter-mu"] = {"endpoint": ["10.0.0.1", 7000], "pending": [], "version": 0}
    yield controller
    controller.db.close()


@pytest.mark.parametrize("mode, idle_restart, warm", [
    ("precopy-delta", False, True), ("precopy-delta", True, False), ("cold", False, False)])
def test_the_planner_expects_a_warm_final_transfer_only_after_a_pre_copy_on_a_kept_window(
        tmp_path, mode, idle_restart, warm):
    controller = Controller(controller_config(tmp_path, "orchestrated", migration={"mode": mode},
                                              network={"server_slow_start_after_idle": idle_restart}))
    try:
        assert controller.state.migration_model.warm_final_transfer is warm
    finally:
        controller.db.close()


@pytest.mark.parametrize("order, message", [
    ({"action": "migrate", "service": "counter-mu", "dest": "edge9"}, "unknown server 'edge9'"),
    ({"action": "migrate", "service": "face-mu", "dest": "edge2"}, "unknown service 'face-mu'"),
    ({"action": "migrate", "service": "counter-mu", "dest": "edge1"}, "already runs on edge1"),
    ({"action": "migrate", "service": "counter-mu", "dest": "edge2", "mode": "teleport"},
     "unknown migration mode 'teleport'"),
    ({"action": "handover", "user": "mu", "ap": "ap7"}, "unknown base station 'ap7'"),
    ({"action": "pause", "user": "bob"}, "unknown user 'bob'"),
    ({"action": "manual", "on": "yes"}, "'on' must be true or false"),
    ({"action": "reboot"}, "unknown operator action 'reboot'"),
])
def test_a_bad_order_is_refused_naming_what_is_wrong_and_nothing_is_logged(controller, order, message):
    with pytest.raises(ValueError, match=message):
        controller.operate(**order)
    assert controller.db.connection.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    assert not controller.manual and not controller.paused


def test_orders_are_logged_as_decisions_and_reach_the_user_in_its_reply(controller):
    assert controller.operate("handover", user="mu", ap="ap2")["ok"]
    assert controller.operate("pause", user="mu")["ok"]
    reply = controller._reply("mu")
    assert reply["handover"] == {"target": "ap2", "at": None} and reply["paused"] is True
    controller.operate("resume", user="mu")
    assert controller._reply("mu")["paused"] is False
    controller.operate("manual", on=True)
    asked = []
    controller._decide("report", "mu", lambda: asked.append(1) or [])
    assert asked == []                                   # the planner is not asked while off
    controller.operate("manual", on=False)
    controller._decide("report", "mu", lambda: asked.append(1) or [])
    assert asked == [1]
    assert controller.db.connection.execute("SELECT COUNT(*) FROM decisions WHERE trigger = 'operator'"
                                            ).fetchone()[0] == 5
    rows = [line for line in (Path(controller.config.run_dir) / "events.jsonl").read_text().splitlines()
            if '"controller.operator"' in line]
    assert len(rows) == 5


def test_an_operator_order_reaches_the_controller_over_its_rpc(controller, tmp_path):
    """What the dashboard does: ``operate`` through the management socket; a bad order comes
    back as an RPC error carrying the controller's message."""
    from testbed.rpc import RpcClient, RpcServer

    server = RpcServer(str(tmp_path / "c.sock"), controller, Controller.REMOTE)
    server.serve_in_thread()
    client = RpcClient(str(tmp_path / "c.sock"), timeout=5)
    try:
        assert client.call("operate", action="manual", on=True)["ok"] and controller.manual
        with pytest.raises(RpcError, match="unknown server 'edge9'"):
            client.call("operate", action="migrate", service="counter-mu", dest="edge9")
    finally:
        client.close()
        server.shutdown()
