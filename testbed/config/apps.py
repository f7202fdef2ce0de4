"""App manifests: everything the testbed knows about a service, in its own folder.

An app is a folder ``apps/<name>/`` with a ``Dockerfile``, a ``server.py`` and
an ``app.yaml``::

    label: Face recognition          # how figures and tables name it
    test_images: [face-obama.jpg]    # what a user sends as tasks by default (assets); none: a few bytes
    cpus: 2                          # default CPU limit of its container
    memory: 2GiB                     # default memory limit
    timeout: 2s                      # shortest task timeout of the user's client
    assets: [res10-face.caffemodel]  # files baked into the image (testbed.assets)

Nothing else in the code names an app.  ``MEC_APPS_DIR`` points the testbed at
another folder of apps (the shared ``apps/common`` always comes from here).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationError

from testbed.config.base import Bytes, ConfigError, Seconds, Strict, read_yaml, validation_lines

PROJECT_APPS = Path(__file__).resolve().parents[2] / "apps"
MANIFEST = "app.yaml"


class AppManifest(Strict):
    label: str = Field(min_length=1, description="name in figures and tables")
    test_images: list[str] = Field(default=[], description="assets sent as tasks by default (empty: a few bytes)")
    cpus: float = Field(default=1.0, gt=0, description="default CPU limit of a container")
    memory: Bytes = Field(default=1024 * 2**20, gt=0, description="default memory limit of a container")
    timeout: Seconds = Field(default=2.0, gt=0, description="shortest task timeout of the user's client")
    assets: list[str] = Field(default=[], description="files baked into the image (testbed.assets)")

    @property
    def memory_mb(self) -> int:
        return int(self.memory / 2**20)


def apps_dir() -> Path:
    return Path(os.environ.get("MEC_APPS_DIR") or PROJECT_APPS)


def load_app(folder: Path) -> AppManifest:
    """The manifest of one app folder; ConfigError naming the file and field otherwise."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ConfigError(f"{folder}: an app folder needs {MANIFEST} (label, test_images, cpus, memory, timeout, "
                          "assets)")
    try:
        return AppManifest.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError("\n".join([f"{path}: invalid app manifest"] +
                                    [f"  {line}" for line in validation_lines(exc)])) from None


def discover_apps(directory: Path | None = None) -> dict[str, AppManifest]:
    """Every app (a folder with a Dockerfile) of ``directory`` (default: ``apps_dir()``)."""
    root = Path(directory or apps_dir())
    if not root.is_dir():
        raise ConfigError(f"{root}: no such apps folder")
    return {folder.name: load_app(folder) for folder in sorted(root.iterdir())
            if (folder / "Dockerfile").exists()}


def app_names() -> list[str]:
    root = apps_dir()
    return sorted(f.name for f in root.iterdir() if (f / "Dockerfile").exists()) if root.is_dir() else []


def app_manifest(app: str) -> AppManifest:
    folder = apps_dir() / app
    if not (folder / "Dockerfile").exists():
        raise ConfigError(f"unknown app {app!r} (known: {', '.join(app_names())})")
    return load_app(folder)
