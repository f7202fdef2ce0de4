"""Migration modes: one module each, registered by name (see ``testbed.migration.base``)."""
