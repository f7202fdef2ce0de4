"""Quantities with units as researchers write them ("100Mbps", "50ms", "1%").

Every quantity is turned into one internal unit at the edge (Mbit/s, seconds,
percent, bytes), so the core never sees a unit string.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/%]*)\s*$")

_BANDWIDTH = {  # to Mbit/s
    "bps": 1e-6, "bit/s": 1e-6,
    "kbps": 1e-3, "kbit": 1e-3, "kbit/s": 1e-3,
    "mbps": 1.0, "mbit": 1.0, "mbit/s": 1.0, "m": 1.0,
    "gbps": 1e3, "gbit": 1e3, "gbit/s": 1e3, "g": 1e3,
}
_DURATION = {  # to seconds
    "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
    "min": 60.0, "h": 3600.0,
}
_SIZE = {  # to bytes
    "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}


def _split(text: str, kind: str) -> tuple[float, str]:
    match = _NUMBER.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a {kind}")
    return float(match.group(1)), match.group(2).lower()


def _convert(value, table: dict, kind: str, example: str, bare_unit: float | None) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a {kind} such as {example!r}, got {value!r}")
    if isinstance(value, (int, float)):
        if bare_unit is None and value != 0:
            raise ValueError(f"{value!r} needs a unit, e.g. {example!r}")
        return float(value) * (bare_unit or 1.0)
    if not isinstance(value, str):
        raise ValueError(f"expected a {kind} such as {example!r}, got {value!r}")
    number, unit = _split(value, kind)
    if not unit:
        if bare_unit is None and number != 0:
            raise ValueError(f"{value!r} needs a unit, e.g. {example!r}")
        return number * (bare_unit or 1.0)
    if unit not in table:
        raise ValueError(f"unknown {kind} unit {unit!r} in {value!r} (use e.g. {example!r})")
    return number * table[unit]


def bandwidth_mbps(value) -> float:
    """'100Mbps' -> 100.0; bare numbers are Mbit/s."""
    return _convert(value, _BANDWIDTH, "bandwidth", "100Mbps", 1.0)


def duration_s(value) -> float:
    """'50ms' -> 0.05; a bare number must be 0 (no guessing of ms vs s)."""
    return _convert(value, _DURATION, "duration", "50ms", None)


def size_bytes(value) -> float:
    """'512MiB' -> 536870912; bare numbers are bytes."""
    return _convert(value, _SIZE, "size", "512MiB", 1.0)


def percent(value) -> float:
    """'1%' or 1 -> 1.0 (percent)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage such as '1%', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a percentage such as '1%', got {value!r}")
    number, unit = _split(value, "percentage")
    if unit not in ("", "%"):
        raise ValueError(f"unknown percentage unit {unit!r} in {value!r}")
    return number


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0ms"
    if abs(seconds) < 10:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds:g}s"


def format_bandwidth(mbps: float) -> str:
    return f"{mbps:g}Mbps"
