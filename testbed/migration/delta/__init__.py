"""Delta encoders (one module each; see ``base`` for the interface)."""

from testbed.migration.delta.base import PAGE, DeltaEncoder, DeltaError, encoder
from testbed.migration.delta.pages import page_addresses

__all__ = ["PAGE", "DeltaEncoder", "DeltaError", "encoder", "page_addresses"]
