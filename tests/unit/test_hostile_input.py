"""Hostile input: whatever a file, an override, a trace or a frame holds, the parsers answer
with their own clear error or a valid result, never anything else."""

from __future__ import annotations

import copy
import io
import json
import socket
import struct
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed import protocol
from testbed.config import ConfigError, apply_overrides, load_experiment_with_source, validate_topology
from testbed.config.overrides import parse_override
from testbed.mobility.trace import TraceError, read_fixes

ROOT = Path(__file__).resolve().parents[2]
PAPER = yaml.safe_load((ROOT / "topologies" / "paper.yaml").read_text())
DEFAULT = yaml.safe_load((ROOT / "experiments" / "default.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["50ms", "100Mbps", "-1", "1e400", "2GiB", "0s", "edge1"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                          inner, max_size=4),
                      max_leaves=12)


def paths_of(data, prefix=()):
    """Every key path of a nested mapping (lists indexed), to mutate one at a time."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths_of(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from paths_of(value, prefix + (index,))


TOPOLOGY_PATHS = [p for p in paths_of(PAPER) if p]
EXPERIMENT_PATHS = [p for p in paths_of({k: v for k, v in DEFAULT.items() if k != "topology"}) if p]


def mutated(data, path, value):
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPOLOGY_PATHS), values)
def test_a_topology_with_any_value_anywhere_is_valid_or_a_config_error(path, value):
    try:
        validate_topology(mutated(PAPER, path, value), "fuzz")
    except ConfigError as exc:
        assert "fuzz: invalid configuration" in str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.sampled_from(EXPERIMENT_PATHS), values)
def test_an_experiment_with_any_value_anywhere_is_valid_or_a_config_error(tmp_path, path, value):
    data = mutated(DEFAULT, path, value)
    data["topology"] = str(ROOT / "topologies" / "paper.yaml")
    experiment = tmp_path / "fuzz.yaml"
    experiment.write_text(yaml.safe_dump(data))
    try:
        load_experiment_with_source(experiment)
    except ConfigError as exc:
        assert str(experiment) in str(exc) or "set:" in str(exc) or str(ROOT) in str(exc)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_any_override_text_applies_or_is_a_config_error(text):
    try:
        parse_override(text)
        apply_overrides(PAPER, [text])
    except ConfigError as exc:
        assert "--set" in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet="0123456789.- \tabcE+\n", max_size=40), max_size=8))
def test_any_trace_text_reads_or_is_a_trace_error_naming_its_line(tmp_path, lines):
    trace = tmp_path / "new_cab.txt"
    trace.write_text("\n".join(lines))
    try:
        read_fixes(trace, bounds=(-90, 90, -180, 180))
    except TraceError as exc:
        message = str(exc)
        assert str(trace) in message


class FakeSocket:
    """The frame reader's view of a peer that sent ``data`` and then closed."""

    def __init__(self, data: bytes):
        self.stream = io.BytesIO(data)

    def recv(self, size: int) -> bytes:
        return self.stream.read(size)


frames = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda h, p, body: protocol.MAGIC + struct.pack("!II", h, p) + body,
              st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=64)),
    st.builds(lambda header, payload: protocol.PREFIX.pack(protocol.MAGIC, len(header), len(payload)) + header
              + payload, st.binary(max_size=40) | st.builds(lambda v: json.dumps(v).encode(), values),
              st.binary(max_size=16)),
)


@settings(max_examples=500, deadline=None)
@given(frames)
def test_any_bytes_are_a_frame_or_a_protocol_error(data):
    try:
        header, _ = protocol.read_frame(FakeSocket(data))
        assert isinstance(header, dict)
        try:
            protocol.check_request(header)
        except protocol.ProtocolError as exc:
            assert exc.code == "bad_request"
    except protocol.ProtocolError as exc:
        assert exc.code in ("bad_magic", "bad_header", "too_large", "bad_request")
    except protocol.ConnectionClosed:
        pass


def test_a_real_socket_pair_gets_the_same_answers():
    a, b = socket.socketpair()
    a.sendall(b"NOPE" + struct.pack("!II", 2, 0) + b"{}")
    try:
        protocol.read_frame(b)
    except protocol.ProtocolError as exc:
        assert exc.code == "bad_magic"
    else:
        raise AssertionError("a frame with a bad magic was accepted")
    finally:
        a.close()
        b.close()
