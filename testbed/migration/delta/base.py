"""Delta encoders: turn checkpoint B into instructions against checkpoint A.

The destination holds A (the pre-migration checkpoint); only the delta
crosses the WAN during downtime.  An encoder is one module of this package
with one ``DeltaEncoder`` subclass that names itself:

* ``pages``: block matching at page granularity against CRIU's pagemap;
* ``rsync``: rsync's own delta algorithm in batch mode, exact for any file.

Both compress their output with zstd at level 1 (``compress``): it runs at hundreds
of MB/s, where zlib's level 6 took 0.55 s of Openface's 2.0 s downtime to compress
its 12 MB of changed pages to the same 7.5 MB.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import zstandard

from testbed.containers.criu_images import PAGE  # noqa: F401  (the encoders' page size, CRIU's)
from testbed.registry import DELTA_ENCODERS


class DeltaError(RuntimeError):
    pass


class DeltaEncoder(ABC):
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            DELTA_ENCODERS.register(cls)

    @abstractmethod
    def encode(self, new: Path, base: Path, out: Path) -> dict:
        """Write the delta turning directory ``base`` into ``new``; ``base`` is unchanged.
        Returns ``bytes`` (the delta's size, what crosses the WAN), ``raw_bytes`` (its size
        before compression) and ``seconds``."""

    @abstractmethod
    def apply(self, delta: Path, target: Path) -> None:
        """Turn directory ``target`` (a copy of the base) into the new checkpoint."""


COMPRESSION_LEVEL = 1


def compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=COMPRESSION_LEVEL).compress(data)


def decompress(data: bytes, source: Path) -> bytes:
    """``data`` decompressed, or a DeltaError naming ``source`` (a delta cut short or damaged)."""
    try:
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as error:
        raise DeltaError(f"{source}: its compressed body is damaged ({error})") from None


def encoder(name: str) -> DeltaEncoder:
    """An instance of the encoder registered as ``name``."""
    return DELTA_ENCODERS.get(name)()


def checkpoint_files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
