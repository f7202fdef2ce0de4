"""The RPC server offers an explicit list of methods and survives bad requests."""

import json
import socket
import threading

import pytest

from testbed.events import EventLog, read_events
from testbed.rpc import RpcClient, RpcError, RpcServer


class Target:
    def ping(self):
        return "pong"

    def add(self, a, b):
        return a + b

    def fence(self):   # public, but not offered
        raise AssertionError("must never run")


@pytest.fixture
def served(tmp_path):
    events = EventLog(tmp_path / "events.jsonl", "test")
    server = RpcServer(str(tmp_path / "rpc.sock"), Target(), ("ping", "add"), events=events)
    server.serve_in_thread()
    yield str(tmp_path / "rpc.sock"), tmp_path / "events.jsonl"
    server.shutdown()
    server.server_close()


def test_only_listed_methods_can_be_called(served):
    path, log = served
    client = RpcClient(path, timeout=5)
    assert client.call("add", a=2, b=3) == 5
    for method in ("fence", "__init__", "_private", "nonexistent"):
        with pytest.raises(RpcError, match="not offered remotely"):
            client.call(method)
    assert client.call("ping") == "pong"                      # still serving on the same connection
    refused = [e for e in read_events(log) if e["kind"] == "rpc.refused"]
    assert len(refused) == 4 and "'fence'" in refused[0]["error"]


def test_malformed_and_silent_clients_do_not_block_others(served):
    path, _ = served
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)                                      # connects and sends nothing
    half = socket.socket(socket.AF_UNIX)
    half.connect(path)
    half.sendall(b'{"id": 1, "method": "ping"')              # half a request, no newline
    bad = socket.socket(socket.AF_UNIX)
    bad.connect(path)
    bad.sendall(b"this is not json\n" + json.dumps({"id": 2, "method": "ping", "params": []}).encode() + b"\n")
    replies = bad.makefile("rb")
    first, second = json.loads(replies.readline()), json.loads(replies.readline())
    assert "malformed request" in first["error"] and "malformed request" in second["error"]
    results = []
    thread = threading.Thread(target=lambda: results.append(RpcClient(path, timeout=5).call("ping")))
    thread.start()
    thread.join(timeout=10)
    assert results == ["pong"]
    for sock in (silent, half, bad):
        sock.close()


def test_a_server_refuses_to_offer_what_its_target_lacks(tmp_path):
    with pytest.raises(TypeError, match="no method deploy"):
        RpcServer(str(tmp_path / "x.sock"), Target(), ("ping", "deploy"))
