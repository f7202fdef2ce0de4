"""Seed 001's application layers held by this server (the image's own layers above the base).

A server that runs an app holds its layer; a layered migration rsyncs it to the
destination's daemon while the service still runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from testbed import images, ports
from testbed.migration.transfer import rsync_push


class LayerStore:
    def __init__(self, directory: Path, docker_client):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.client = docker_client

    def install(self, app: str) -> None:
        """Hold ``app``'s application layer here (hard links to the exported layer)."""
        target = self.directory / app
        if (target / images.LAYER_MARKER).exists():
            return
        source = images.export_app_layer(app, self.client)
        with images.exclusive(self.directory):          # parallel migrations install it once
            if (target / images.LAYER_MARKER).exists():
                return
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for item in sorted(source.iterdir(), key=lambda item: item.name == images.LAYER_MARKER):
                os.link(item, target / item.name)          # the marker last: complete once it is there

    def has(self, app: str) -> bool:
        return (self.directory / app / images.LAYER_MARKER).exists()

    def size(self, app: str) -> int:
        return sum(f.stat().st_size for f in (self.directory / app).glob("*") if f.is_file())

    def sync_to(self, app: str, address: str) -> dict:
        """rsync the layer to the daemon at ``address`` (incremental: nothing if already there).

        The completion marker goes in a second pass, once the tarballs are there (rsync
        would send it first, its name sorting first): a sync cut short leaves a layer the
        destination does not take for complete."""
        self.install(app)
        return push_layer(self.directory / app, address, ports.AGENT_RSYNC)


def push_layer(layer: Path, address: str, port: int) -> dict:
    """rsync a layer directory to the daemon at ``address``, its completion marker last
    (a stale marker there is removed first); bytes and seconds of both passes."""
    tarballs = rsync_push(layer, address, "layers", layer.name, port, exclude=(images.LAYER_MARKER,))
    marker = rsync_push(layer, address, "layers", layer.name, port)
    return {"bytes": tarballs["bytes"] + marker["bytes"], "seconds": tarballs["seconds"] + marker["seconds"]}
