"""``--set KEY=VALUE`` overrides, applied to the raw data before validation."""

from __future__ import annotations

import copy

import yaml

from testbed.config.base import ConfigError


def parse_override(text: str) -> tuple[list[str], object]:
    """'links.edge_edge.delay=30ms' -> (['links', 'edge_edge', 'delay'], '30ms')."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. links.edge_edge.delay=30ms")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if not key.strip() or any(not part for part in path):
        raise ConfigError(f"--set {text!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def _find_list_item(items: list, segment: str):
    if segment.isdigit():
        index = int(segment)
        if index < len(items):
            return index
        return None
    for index, item in enumerate(items):  # connections may be named "a-b"
        if isinstance(item, dict) and {item.get("a"), item.get("b")} == set(segment.split("-", 1)):
            return index
    return None


def apply_overrides(data: dict, overrides: list[str], source: str = "--set") -> dict:
    """Return a copy of ``data`` with each KEY=VALUE applied (before validation)."""
    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for depth, segment in enumerate(path):
            last = depth == len(path) - 1
            where = ".".join(path[: depth + 1])
            if isinstance(node, list):
                index = _find_list_item(node, segment)
                if index is None:
                    raise ConfigError(f"{source} {text!r}: no item {segment!r} at {where}")
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[segment] = value
                else:
                    if segment not in node or node[segment] is None:
                        node[segment] = {}
                    node = node[segment]
            else:
                raise ConfigError(f"{source} {text!r}: {'.'.join(path[:depth])} is a value, "
                                  f"not a section")
    return result
