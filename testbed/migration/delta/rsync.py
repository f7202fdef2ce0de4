"""The ``rsync`` delta encoder: rsync's own delta algorithm in batch mode
(``--only-write-batch`` at the source, ``--read-batch`` at the destination),
exact for any file."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from testbed.migration.delta.base import DeltaEncoder, DeltaError, compress, decompress


class RsyncDelta(DeltaEncoder):
    name = "rsync"

    def encode(self, new: Path, base: Path, out: Path) -> dict:
        started = time.monotonic()
        out.parent.mkdir(parents=True, exist_ok=True)
        batch = out.with_name(out.name + ".batch")
        for leftover in (batch, batch.with_name(batch.name + ".sh")):
            leftover.unlink(missing_ok=True)
        result = subprocess.run(["rsync", "-a", "--no-whole-file", "--ignore-times", "--delete",
                                 f"--only-write-batch={batch}",
                                 f"{new}/", f"{base}/"], capture_output=True, text=True)
        if result.returncode != 0:
            raise DeltaError(f"rsync --only-write-batch failed: {result.stderr.strip()}")
        batch.with_name(batch.name + ".sh").unlink(missing_ok=True)
        raw = batch.read_bytes()
        out.write_bytes(compress(raw))
        batch.unlink()
        return {"bytes": out.stat().st_size, "raw_bytes": len(raw), "seconds": time.monotonic() - started}

    def apply(self, delta: Path, target: Path) -> None:
        batch = delta.with_name(delta.name + ".batch")
        batch.write_bytes(decompress(delta.read_bytes(), delta))
        try:
            # --ignore-times on both sides: checkpoints taken within a second of each
            # other have equal sizes and mtimes, which rsync would take as unchanged.
            result = subprocess.run(["rsync", "-a", "--ignore-times", "--delete", f"--read-batch={batch}",
                                     f"{target}/"],
                                    capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
        finally:
            batch.unlink(missing_ok=True)
        if result.returncode != 0:
            raise DeltaError(f"rsync --read-batch failed: {result.stderr.strip()}")
