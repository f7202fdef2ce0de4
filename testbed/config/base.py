"""What every file the researcher writes shares: the error, strictness, units, YAML reading.

Errors name the file, the field (as a dotted path, e.g.
``links.edge_edge.bandwidth``) and the reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

from testbed import units

Mbps = Annotated[float, BeforeValidator(units.bandwidth_mbps)]
# Written back with its unit, so a model dumped as JSON (a process's config) validates again.
Seconds = Annotated[float, BeforeValidator(units.duration_s), PlainSerializer(lambda v: f"{v!r}s", when_used="json")]
Percent = Annotated[float, BeforeValidator(units.percent)]
Bytes = Annotated[float, BeforeValidator(units.size_bytes)]


class ConfigError(Exception):
    """A configuration file or override is wrong; the message says where and why."""


class Strict(BaseModel):
    """Unknown fields are errors: a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _format_location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) if loc else "(top level)"


def validation_lines(error: ValidationError, prefix: str = "") -> list[str]:
    """One ``field: reason`` line per problem; ``prefix`` is the dotted path of the model."""
    lines = []
    for item in error.errors():
        where = _format_location(item["loc"])
        if prefix:
            where = prefix if where == "(top level)" else f"{prefix}.{where}"
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if item["type"] == "missing":
            message = "field required"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        for part in message.split("; "):
            # Cross-field checks name their own field ("connections.1.b: ...").
            head = part.split(": ", 1)[0]
            if re.fullmatch(r"[A-Za-z_][\w.-]*", head) and ": " in part:
                field = head if not item["loc"] and not prefix else f"{where}.{head}"
                lines.append(f"{field}: {part.split(': ', 1)[1]}")
            else:
                lines.append(f"{where}: {part}")
    return lines


def format_validation_error(source: str, error: ValidationError, prefix: str = "") -> str:
    """``source``: the file (or override) the data came from; ``prefix``: where in it the model is."""
    return format_problems(source, validation_lines(error, prefix))


def format_problems(source: str, lines: list[str]) -> str:
    return "\n".join([f"{source}: invalid configuration"] + [f"  {line}" for line in lines])


def read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})") \
            from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def nested_errors(model: type[BaseModel], data, prefix: str) -> list[str]:
    """Validate ``data`` against ``model``; the problems as ``prefix.field: reason`` lines."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return validation_lines(exc, prefix)
    return []
