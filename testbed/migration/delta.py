"""Delta encoders: turn checkpoint B into instructions against checkpoint A.

The destination holds A (the pre-migration checkpoint); only the delta
crosses the WAN during downtime.  Two encoders, one interface:

* ``pages``: block matching at page granularity.  CRIU stores memory in
  ``pages-*.img`` as whole 4 KiB pages, so rsync's idea (send a reference for
  every block the receiver already has, data for the rest) needs no rolling
  checksum here: every page of B is looked up among A's pages (same offset
  first, then by content anywhere in A), and only unknown pages are sent.
  Vectorised with numpy, it keeps up with checkpoints of hundreds of MB.
* ``rsync``: rsync's own delta algorithm in batch mode (``--only-write-batch``
  at the source, ``--read-batch`` at the destination), exact for any file.

Both compress their output (zlib): literal memory pages compress well.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
import zlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

PAGE = 4096
MAGIC = b"MECDELTA1\n"
_OP = struct.Struct("!BQQ")     # op, a, b
OP_COPY, OP_DATA, OP_XOR = 1, 2, 3
# copy: (base offset, length); data: (length, 0) + bytes;
# xor: (base offset, length) + bytes to XOR with the base (a page changed in place:
# mostly zeros, which compress to almost nothing)


class DeltaError(RuntimeError):
    pass


class DeltaEncoder(ABC):
    name: str

    @abstractmethod
    def encode(self, new: Path, base: Path, out: Path) -> dict:
        """Write the delta turning directory ``base`` into ``new``; ``base`` is unchanged."""

    @abstractmethod
    def apply(self, delta: Path, target: Path) -> None:
        """Turn directory ``target`` (a copy of the base) into the new checkpoint."""


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


_WEIGHTS = np.random.default_rng(0x4D4543).integers(1, 2**63, PAGE // 8, dtype=np.uint64) | np.uint64(1)


def _fingerprints(pages: np.ndarray) -> list[int]:
    """A 64-bit fingerprint per page (a random linear hash, vectorised); equal pages
    have equal fingerprints, and every match is verified byte by byte."""
    if not len(pages):
        return []
    return (pages.view(np.uint64) @ _WEIGHTS).tolist()


def encode_pages(new_data: bytes, base_data: bytes) -> list[tuple]:
    """Ops that rebuild ``new_data`` from ``base_data`` (both multiples of a page)."""
    new = np.frombuffer(new_data, dtype=np.uint8).reshape(-1, PAGE)
    base = np.frombuffer(base_data, dtype=np.uint8).reshape(-1, PAGE)
    n_new, n_base = len(new), len(base)
    common = min(n_new, n_base)
    same = np.zeros(n_new, dtype=bool)
    if common:
        same[:common] = ~(new[:common] != base[:common]).any(axis=1)
    source = np.full(n_new, -1, dtype=np.int64)
    source[same] = np.nonzero(same)[0]
    changed = np.nonzero(~same)[0]
    if len(changed):
        index: dict[int, int] = {}
        for i, fingerprint in enumerate(_fingerprints(base)):
            index.setdefault(fingerprint, i)
        for i, fingerprint in zip(changed, _fingerprints(new[changed])):
            j = index.get(fingerprint)
            if j is not None and np.array_equal(new[i], base[j]):
                source[i] = j
    in_place = (source < 0) & (np.arange(n_new) < common)   # changed where it was: XOR
    ops: list[tuple] = []
    i = 0
    while i < n_new:
        j = i
        if source[i] >= 0:
            while j + 1 < n_new and source[j + 1] == source[j] + 1:
                j += 1
            ops.append((OP_COPY, int(source[i]) * PAGE, (j - i + 1) * PAGE))
        elif in_place[i]:
            while j + 1 < n_new and in_place[j + 1]:
                j += 1
            xor = np.bitwise_xor(new[i:j + 1], base[i:j + 1]).tobytes()
            ops.append((OP_XOR, i * PAGE, xor))
        else:
            while j + 1 < n_new and source[j + 1] < 0 and not in_place[j + 1]:
                j += 1
            ops.append((OP_DATA, new_data[i * PAGE:(j + 1) * PAGE]))
        i = j + 1
    return ops


class PageDelta(DeltaEncoder):
    name = "pages"

    def encode(self, new: Path, base: Path, out: Path) -> dict:
        started = time.monotonic()
        new_files, base_files = _files(new), _files(base)
        body = bytearray()
        manifest = {"delete": sorted(set(base_files) - set(new_files)), "files": []}
        literal = 0
        for name, path in new_files.items():
            data = path.read_bytes()
            entry = {"path": name, "size": len(data), "mode": path.stat().st_mode & 0o7777}
            old = base_files.get(name)
            old_data = old.read_bytes() if old is not None else None
            if old_data == data:
                entry["kind"] = "same"
            elif old_data is not None and len(data) % PAGE == 0 and len(old_data) % PAGE == 0 and data:
                entry["kind"] = "ops"
                entry["offset"] = len(body)
                for op in encode_pages(data, old_data):
                    if op[0] == OP_COPY:
                        body += _OP.pack(OP_COPY, op[1], op[2])
                    elif op[0] == OP_XOR:
                        body += _OP.pack(OP_XOR, op[1], len(op[2])) + op[2]
                        literal += len(op[2])
                    else:
                        body += _OP.pack(OP_DATA, len(op[1]), 0) + op[1]
                        literal += len(op[1])
                entry["length"] = len(body) - entry["offset"]
            else:
                entry["kind"] = "data"
                entry["offset"] = len(body)
                body += data
                entry["length"] = len(data)
                literal += len(data)
            manifest["files"].append(entry)
        header = json.dumps(manifest).encode()
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = zlib.compress(bytes(body), 6)
        with open(out, "wb") as handle:
            handle.write(MAGIC + struct.pack("!Q", len(header)) + header + payload)
        return {"bytes": out.stat().st_size, "literal_bytes": literal, "seconds": time.monotonic() - started}

    def apply(self, delta: Path, target: Path) -> None:
        raw = delta.read_bytes()
        if not raw.startswith(MAGIC):
            raise DeltaError(f"{delta} is not a page delta")
        (hlen,) = struct.unpack_from("!Q", raw, len(MAGIC))
        start = len(MAGIC) + 8
        manifest = json.loads(raw[start:start + hlen])
        body = zlib.decompress(raw[start + hlen:])
        for entry in manifest["files"]:
            path = target / entry["path"]
            if entry["kind"] == "same":
                if not path.exists():
                    raise DeltaError(f"base lacks {entry['path']}")
                continue
            chunk = body[entry["offset"]:entry["offset"] + entry["length"]]
            ops = list(_parse_ops(chunk)) if entry["kind"] == "ops" else []
            if ops and _patches_in_place(ops, entry["size"], path):
                _patch(path, ops, entry["mode"])
                continue
            if entry["kind"] == "data":
                data = chunk
            else:
                base = path.read_bytes()
                parts = []
                for op, a, data_or_length in ops:
                    if op == OP_COPY:
                        parts.append(base[a:a + data_or_length])
                    elif op == OP_XOR:
                        old = np.frombuffer(base, dtype=np.uint8, count=len(data_or_length), offset=a)
                        parts.append(np.bitwise_xor(old, np.frombuffer(data_or_length, dtype=np.uint8)).tobytes())
                    else:
                        parts.append(data_or_length)
                data = b"".join(parts)
            if len(data) != entry["size"]:
                raise DeltaError(f"{entry['path']}: rebuilt {len(data)} bytes, expected {entry['size']}")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".delta-tmp")
            tmp.write_bytes(data)
            os.chmod(tmp, entry["mode"])
            tmp.replace(path)
        for name in manifest["delete"]:
            (target / name).unlink(missing_ok=True)


def _parse_ops(chunk: bytes):
    """Yield ``(op, base offset, length)`` for copies and ``(op, base offset | None, bytes)`` otherwise."""
    view = memoryview(chunk)
    pos = 0
    while pos < len(chunk):
        op, a, b = _OP.unpack_from(chunk, pos)
        pos += _OP.size
        if op == OP_COPY:
            yield op, a, b
        elif op == OP_XOR:
            yield op, a, view[pos:pos + b]
            pos += b
        elif op == OP_DATA:
            yield op, None, view[pos:pos + a]
            pos += a
        else:
            raise DeltaError(f"unknown delta op {op} at byte {pos - _OP.size}")


def _patches_in_place(ops: list, size: int, path: Path) -> bool:
    """True if the ops keep every page where it is: then only changed pages are written
    (the usual case for memory dumped twice from one process; much less I/O in downtime)."""
    if not path.exists() or path.stat().st_size != size:
        return False
    position = 0
    for op, a, data_or_length in ops:
        length = data_or_length if op == OP_COPY else len(data_or_length)
        if op in (OP_COPY, OP_XOR) and a != position:
            return False
        position += length
    return position == size


def _patch(path: Path, ops: list, mode: int) -> None:
    with open(path, "r+b") as handle:
        position = 0
        for op, _, data_or_length in ops:
            if op == OP_COPY:
                position += data_or_length
                continue
            if op == OP_XOR:
                handle.seek(position)
                old = np.frombuffer(handle.read(len(data_or_length)), dtype=np.uint8)
                data = np.bitwise_xor(old, np.frombuffer(data_or_length, dtype=np.uint8)).tobytes()
            else:
                data = data_or_length
            handle.seek(position)
            handle.write(data)
            position += len(data)
    os.chmod(path, mode)


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
        out.write_bytes(zlib.compress(batch.read_bytes(), 1))
        batch.unlink()
        return {"bytes": out.stat().st_size, "seconds": time.monotonic() - started}

    def apply(self, delta: Path, target: Path) -> None:
        batch = delta.with_name(delta.name + ".batch")
        batch.write_bytes(zlib.decompress(delta.read_bytes()))
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


ENCODERS: dict[str, type[DeltaEncoder]] = {cls.name: cls for cls in (PageDelta, RsyncDelta)}


def encoder(name: str) -> DeltaEncoder:
    try:
        return ENCODERS[name]()
    except KeyError:
        raise ValueError(f"unknown delta encoder {name!r} (known: {', '.join(ENCODERS)})") from None
