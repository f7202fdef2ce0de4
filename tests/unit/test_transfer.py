"""The state channel between agents, over loopback: a push that cannot be stored is answered
with its real error, and the kept-open connection still carries the next push."""

from __future__ import annotations

import pytest

from testbed.migration.transfer import DataChannel, FileReceiver, TransferError


@pytest.fixture
def receiver(tmp_path):
    server = FileReceiver(("127.0.0.1", 0), tmp_path / "inbox")
    server.serve_in_thread()
    yield server, tmp_path / "inbox"
    server.shutdown()
    server.server_close()


def test_files_arrive_under_service_and_slot(receiver, tmp_path):
    server, inbox = receiver
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "pages.img").write_bytes(b"x" * 300_000)
    (tmp_path / "out" / "sub" / "core.img").write_bytes(b"core")
    sent = DataChannel(server.server_address).push("svc", "m1-final", tmp_path / "out")
    assert sent["bytes"] == 300_004 and sent["files"] == 2
    assert (inbox / "svc" / "m1-final" / "pages.img").read_bytes() == b"x" * 300_000
    assert (inbox / "svc" / "m1-final" / "sub" / "core.img").read_bytes() == b"core"


def test_a_push_that_cannot_be_stored_reports_why_and_the_stream_stays_in_frame(receiver, tmp_path):
    server, inbox = receiver
    out = tmp_path / "out"
    out.mkdir()
    (out / "pages.img").write_bytes(b"p" * 16_000_000)
    channel = DataChannel(server.server_address, timeout=10)
    # more than the socket buffers hold, so the sender is still writing when the receiver fails;
    # the slot's place is taken by a file: the receiver cannot create the directory
    (inbox / "svc").mkdir(parents=True)
    (inbox / "svc" / "blocked").write_text("in the way")
    with pytest.raises(TransferError, match="receiver at 127.0.0.1: (FileExistsError|NotADirectoryError)"):
        channel.push("svc", "blocked", out, clear=False)
    kept = list(channel._idle)
    # the same kept-open connection carries the next push (no fresh one), byte-exact
    sent = channel.push("svc", "next", out)
    assert sent["reply"]["ok"] is True and channel._idle == kept and len(kept) == 1
    assert (inbox / "svc" / "next" / "pages.img").read_bytes() == b"p" * 16_000_000
    channel.close()


def test_a_path_leaving_the_inbox_is_refused(receiver, tmp_path):
    server, inbox = receiver
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "evil.img").write_bytes(b"e")
    channel = DataChannel(server.server_address)
    with pytest.raises(TransferError, match="refusing path"):
        channel.push("svc", "s", out / "a", files=[out / "a" / ".." / "evil.img"])
    assert not (inbox / "svc" / "evil.img").exists()
    assert channel.push("svc", "s", out, files=[out / "evil.img"])["files"] == 1


def test_a_paced_push_keeps_to_its_rate_and_the_next_push_on_the_connection_is_not_paced(receiver, tmp_path):
    """Pre-copy pacing (SO_MAX_PACING_RATE): 1.5 MB at 1 MB/s takes about 1.5 s even over
    loopback; the same kept-open connection then carries a push at full speed."""
    server, inbox = receiver
    out = tmp_path / "out"
    out.mkdir()
    (out / "pages.img").write_bytes(b"q" * 1_500_000)
    channel = DataChannel(server.server_address)
    paced = channel.push("svc", "pre", out, pace_bytes_per_s=1_000_000)
    unpaced = channel.push("svc", "final", out)
    assert len(channel._idle) == 1                       # one connection carried both
    assert 1.2 <= paced["seconds"] <= 6.0, paced["seconds"]
    assert unpaced["seconds"] < 0.5 * paced["seconds"], (unpaced["seconds"], paced["seconds"])
    assert (inbox / "svc" / "pre" / "pages.img").stat().st_size == 1_500_000
    channel.close()


def test_a_push_cut_short_leaves_nothing_in_the_inbox(receiver):
    """The sender vanishes mid-push (its path cut, then the rest of its stream arriving after a
    fence removed the slot): the half-written slot does not stay behind as if it were state."""
    import json
    import socket
    import struct
    import time

    server, inbox = receiver
    manifest = json.dumps({"service": "svc", "slot": "m1-final", "clear": True, "then": None,
                           "files": [{"path": "pages.img", "size": 1_000_000}]}).encode()
    with socket.create_connection(server.server_address) as sock:
        sock.sendall(struct.pack("!I", len(manifest)) + manifest + b"z" * 100_000)
        deadline = time.monotonic() + 5
        while not (inbox / "svc" / "m1-final" / "pages.img").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (inbox / "svc" / "m1-final" / "pages.img").exists()      # it was being written
    deadline = time.monotonic() + 5
    while (inbox / "svc").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (inbox / "svc").exists()


@pytest.fixture
def rsync_daemon(tmp_path):
    """A real rsync daemon on loopback, as a server's agent runs one for application layers."""
    import os
    import shutil
    import socket
    import time

    from testbed.migration.transfer import rsyncd_config, start_rsyncd

    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed (setup.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("the agents' rsync daemon runs as root (uid = root in its configuration)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path / "dest"
    root.mkdir()
    daemon = start_rsyncd(rsyncd_config(tmp_path / "rsyncd.conf", root), "127.0.0.1", port)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or daemon.poll() is not None:
                daemon.kill()
                raise
            time.sleep(0.05)
    yield root, port
    daemon.terminate()
    daemon.wait()


def test_a_layer_arrives_before_its_completion_marker(rsync_daemon, tmp_path):
    from testbed.agent.layers import push_layer
    from testbed.images import LAYER_MARKER
    from testbed.migration.transfer import rsync_push

    root, port = rsync_daemon
    layer = tmp_path / "src" / "face"
    layer.mkdir(parents=True)
    (layer / "layer-00.tar").write_bytes(b"new layer" * 1000)
    (layer / LAYER_MARKER).write_text("sha256:new")
    stale = root / "face"                       # an older layer, complete, at the destination
    stale.mkdir()
    (stale / "layer-00.tar").write_bytes(b"old")
    (stale / LAYER_MARKER).write_text("sha256:old")

    first = rsync_push(layer, "127.0.0.1", "layers", "face", port, exclude=(LAYER_MARKER,))
    assert (stale / "layer-00.tar").read_bytes() == b"new layer" * 1000
    assert not (stale / LAYER_MARKER).exists(), "the stale marker must go before the new tarballs arrive"
    assert first["bytes"] > 0

    (stale / "layer-00.tar").unlink()           # as if the tarballs' pass had been cut short
    sent = push_layer(layer, "127.0.0.1", port)
    assert (stale / LAYER_MARKER).read_text() == "sha256:new"
    assert (stale / "layer-00.tar").read_bytes() == b"new layer" * 1000
    assert sent["bytes"] > 9000


def test_an_order_is_seen_before_its_files_and_acted_on_after(tmp_path):
    seen = []

    def ahead(order):
        seen.append(("ahead", order["method"], (inbox / "svc" / "m1-final" / "pages.img").exists()))

    def arrival(order):
        seen.append(("arrival", order["method"], (inbox / "svc" / "m1-final" / "pages.img").exists()))
        return {}

    inbox = tmp_path / "inbox"
    server = FileReceiver(("127.0.0.1", 0), inbox, on_arrival=arrival, ahead_of_arrival=ahead)
    server.serve_in_thread()
    try:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "pages.img").write_bytes(b"x" * 1000)
        DataChannel(server.server_address).push("svc", "m1-final", tmp_path / "out", then={"method": "restore"})
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("ahead", "restore", False), ("arrival", "restore", True)]
