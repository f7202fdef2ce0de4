"""Seed 001's layered migration: base, application and instance layers.

The base layer (the Debian base image) is on every server.  The application
layer (the service image's own layers) is synchronised with rsync while the
service runs; when the destination already has it, rsync sends next to
nothing.  Only the instance layer (checkpoint + writable layer) is sent while
the service is down.
"""

from testbed.migration.base import Migration, MigrationMode
from testbed.migration.modes.cold import Cold


class Layered(MigrationMode):
    name = "layered"

    def pre(self, m: Migration):
        m.record["app_found"] = bool(m.peer.call("has_layer", app=m.spec.app))
        with m.phase("app_layer_sync"):
            sent = m.source.sync_app_layer(m.spec.app, m.dest)
        m.count("before_downtime", sent["bytes"])
        m.size("app_layer", m.source.app_layer_size(m.spec.app))

    def final(self, m: Migration):
        return Cold().final(m)
