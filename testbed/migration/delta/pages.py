"""The ``pages`` delta encoder: block matching at page granularity.

CRIU stores memory in ``pages-*.img`` as whole 4 KiB pages, so rsync's idea
(send a reference for every block the receiver already has, data for the
rest) needs no rolling checksum here: every page of B is looked up among A's
pages (the page CRIU's pagemap puts at the same virtual address first, then by
content anywhere in A); a page changed in place is sent as its XOR with the
old one, a new page whole.  Vectorised with numpy, it keeps up with
checkpoints of hundreds of MB.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import json
import mmap
import os
import struct
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from testbed.containers.criu_images import stored_pages
from testbed.migration.delta.base import PAGE, DeltaEncoder, DeltaError, checkpoint_files, compress, decompress

MAGIC = b"MECDELTA2\n"     # 2: the body is zstd, not zlib
_OP = struct.Struct("!BQQ")     # op, a, b
OP_COPY, OP_DATA, OP_XOR = 1, 2, 3
# copy: (base offset, length); data: (length, 0) + bytes;
# xor: (base offset, length) + bytes to XOR with the base (a page changed in place:
# mostly zeros, which compress to almost nothing)


_WEIGHTS = np.random.default_rng(0x4D4543).integers(1, 2**63, PAGE // 8, dtype=np.uint64) | np.uint64(1)


def _fingerprints(pages: np.ndarray) -> list[int]:
    """A 64-bit fingerprint per page (a random linear hash, vectorised); equal pages
    have equal fingerprints, and every match is verified byte by byte."""
    if not len(pages):
        return []
    return (pages.view(np.uint64) @ _WEIGHTS).tolist()


def encode_pages(new_data: bytes, base_data: bytes, counterpart: np.ndarray | None = None) -> list[tuple]:
    """Ops that rebuild ``new_data`` from ``base_data`` (both multiples of a page).

    ``counterpart[i]``: the base page that held new page i's memory (same virtual
    address; -1 for none), so a page changed in place is XORed against its old
    self even when pages before it were added or dropped.  By default the page
    at the same offset."""
    new = np.frombuffer(new_data, dtype=np.uint8).reshape(-1, PAGE)
    base = np.frombuffer(base_data, dtype=np.uint8).reshape(-1, PAGE)
    n_new, n_base = len(new), len(base)
    if counterpart is None:
        counterpart = np.where(np.arange(n_new) < n_base, np.arange(n_new), -1)
    has_old = counterpart >= 0
    same = np.zeros(n_new, dtype=bool)
    for start in range(0, n_new, 4096):                  # in blocks: no copy of the whole dump
        old = counterpart[start:start + 4096]
        if len(old) and old[0] >= 0 and np.all(np.diff(old) == 1):   # a run that stayed together: views
            same[start:start + len(old)] = (new[start:start + len(old)] == base[old[0]:old[0] + len(old)]).all(axis=1)
            continue
        block = np.nonzero(old >= 0)[0] + start
        if len(block):
            same[block] = (new[block] == base[counterpart[block]]).all(axis=1)
    source = np.where(same, counterpart, -1)
    changed = np.nonzero(~same)[0]
    if len(changed):
        index: dict[int, int] = {}
        for i, fingerprint in enumerate(_fingerprints(base)):
            index.setdefault(fingerprint, i)
        for i, fingerprint in zip(changed, _fingerprints(new[changed])):
            j = index.get(fingerprint)
            if j is not None and np.array_equal(new[i], base[j]):
                source[i] = j
    in_place = (source < 0) & has_old              # changed where it was: XOR
    ops: list[tuple] = []
    i = 0
    while i < n_new:
        j = i
        if source[i] >= 0:
            while j + 1 < n_new and source[j + 1] == source[j] + 1:
                j += 1
            ops.append((OP_COPY, int(source[i]) * PAGE, (j - i + 1) * PAGE))
        elif in_place[i]:
            while j + 1 < n_new and in_place[j + 1] and counterpart[j + 1] == counterpart[j] + 1:
                j += 1
            old = base[counterpart[i]:counterpart[i] + j - i + 1]
            ops.append((OP_XOR, int(counterpart[i]) * PAGE, np.bitwise_xor(new[i:j + 1], old).tobytes()))
        else:
            while j + 1 < n_new and source[j + 1] < 0 and not in_place[j + 1]:
                j += 1
            ops.append((OP_DATA, new_data[i * PAGE:(j + 1) * PAGE]))
        i = j + 1
    return ops


def page_addresses(pagemap: Path) -> tuple[str, np.ndarray]:
    """``criu_images.stored_pages``: the pages file a pagemap describes and the address of
    each of its pages; DeltaError when the pagemap is malformed."""
    try:
        return stored_pages(pagemap)
    except ValueError as error:
        raise DeltaError(str(error)) from None


def _counterparts(new: Path, base: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Per pages file of ``new``: the base pages file of the same process and, per
    page, the index of the base page at the same virtual address (-1: none)."""
    found = {}
    for pagemap in sorted(new.glob("pagemap-*.img")):
        if not (base / pagemap.name).exists():
            continue
        new_pages, new_addresses = page_addresses(pagemap)
        base_pages, base_addresses = page_addresses(base / pagemap.name)
        order = np.argsort(base_addresses, kind="stable")
        slot = np.minimum(np.searchsorted(base_addresses[order], new_addresses), max(len(order) - 1, 0))
        match = np.full(len(new_addresses), -1, dtype=np.int64)
        if len(order):
            hit = base_addresses[order][slot] == new_addresses
            match[hit] = order[slot[hit]]
        found[new_pages] = (base_pages, match)
    return found


MAP_AT_BYTES = 1 << 20


def _contents(path: Path, opened: ExitStack):
    """A file's bytes; a large one mapped rather than read (the page cache holds the
    checkpoint just written: copying hundreds of MB into this process costs 0.1 s)."""
    size = path.stat().st_size
    if size < MAP_AT_BYTES:
        return path.read_bytes()
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
    opened.callback(_unmap, mapped)
    return mapped


def _unmap(mapped: mmap.mmap) -> None:
    try:
        mapped.close()
    except BufferError:     # an array still looks into it (an exception's traceback): the GC unmaps it
        pass


def _equal(a, b) -> bool:
    """Equal contents, bytes or mapped."""
    return len(a) == len(b) and bool(np.array_equal(np.frombuffer(a, dtype=np.uint8), np.frombuffer(b, dtype=np.uint8)))


class PageDelta(DeltaEncoder):
    name = "pages"

    def encode(self, new: Path, base: Path, out: Path) -> dict:
        started = time.monotonic()
        new_files, base_files = checkpoint_files(new), checkpoint_files(base)
        body = bytearray()
        manifest = {"delete": sorted(set(base_files) - set(new_files)), "files": []}
        literal = 0
        counterparts = _counterparts(new, base)
        with ExitStack() as opened:
            for name, path in new_files.items():
                data = _contents(path, opened)
                entry = {"path": name, "size": len(data), "mode": path.stat().st_mode & 0o7777}
                base_name, counterpart = counterparts.get(name, (name, None))
                old = base_files.get(base_name)
                old_data = _contents(old, opened) if old is not None else None
                if old_data is not None and base_name == name and _equal(old_data, data):
                    entry["kind"] = "same"
                elif old_data is not None and len(data) % PAGE == 0 and len(old_data) % PAGE == 0 and data:
                    entry["kind"] = "ops"
                    entry["base"] = base_name
                    entry["offset"] = len(body)
                    for op in encode_pages(data, old_data, counterpart):
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
        payload = compress(body)
        with open(out, "wb") as handle:
            handle.write(MAGIC + struct.pack("!Q", len(header)) + header + payload)
        return {"bytes": out.stat().st_size, "raw_bytes": len(header) + len(body), "literal_bytes": literal,
                "seconds": time.monotonic() - started}

    def apply(self, delta: Path, target: Path) -> None:
        """Files whose pages stayed where they were are patched in place (only
        changed pages written); the others are rebuilt next to themselves and
        renamed over, so a failure leaves every file whole."""
        raw = delta.read_bytes()
        if not raw.startswith(MAGIC):
            raise DeltaError(f"{delta} is not a page delta")
        (hlen,) = struct.unpack_from("!Q", raw, len(MAGIC))
        start = len(MAGIC) + 8
        manifest = json.loads(raw[start:start + hlen])
        body = decompress(raw[start + hlen:], delta)
        # a file rebuilt from another one's pages (CRIU numbered the pages file
        # differently this time) reads a hard link of it: its old inode survives
        # the rewrite of its own name
        borrowed = {e["base"] for e in manifest["files"] if e.get("base", e["path"]) != e["path"]}
        links = {}
        for name in borrowed:
            links[name] = target / f".delta-base-{len(links)}"
            links[name].unlink(missing_ok=True)
            os.link(target / name, links[name])
        try:
            for entry in manifest["files"]:
                self._apply_file(entry, body, target, links)
        finally:
            for link in links.values():
                link.unlink(missing_ok=True)
        for name in manifest["delete"]:
            (target / name).unlink(missing_ok=True)

    @staticmethod
    def _apply_file(entry: dict, body: bytes, target: Path, links: dict[str, Path]) -> None:
        path = target / entry["path"]
        if entry["kind"] == "same":
            if not path.exists():
                raise DeltaError(f"base lacks {entry['path']}")
            return
        chunk = body[entry["offset"]:entry["offset"] + entry["length"]]
        base = links.get(entry.get("base", entry["path"]), path)
        ops = list(_parse_ops(chunk)) if entry["kind"] == "ops" else [(OP_DATA, None, chunk)]
        if base == path and entry["path"] not in links:
            if _patches_in_place(ops, entry["size"], path):
                _patch(path, ops, entry["mode"])
                return
            if entry["kind"] == "ops" and path.exists() and _reshape(path, ops, entry["size"]):
                os.chmod(path, entry["mode"])
                return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".delta-tmp")
        try:
            _rebuild(base, ops, tmp)
            if tmp.stat().st_size != entry["size"]:
                raise DeltaError(f"{entry['path']}: rebuilt {tmp.stat().st_size} bytes, expected {entry['size']}")
            os.chmod(tmp, entry["mode"])
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)


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


def _length(op: int, data_or_length) -> int:
    """Bytes an op puts in the new file."""
    return data_or_length if op == OP_COPY else len(data_or_length)


def _xor(a, b) -> bytes:
    return np.bitwise_xor(np.frombuffer(a, dtype=np.uint8), np.frombuffer(b, dtype=np.uint8)).tobytes()


def _rebuild(base: Path, ops: list, out: Path) -> None:
    """Write ``out`` from ``base`` and the ops, streaming: copies stay in the kernel."""
    needs_base = any(op != OP_DATA for op, _, _ in ops)
    with open(base if needs_base else os.devnull, "rb") as old, open(out, "wb", buffering=0) as new:
        for op, a, data_or_length in ops:
            if op == OP_COPY:
                left, offset = data_or_length, a
                while left:
                    done = os.copy_file_range(old.fileno(), new.fileno(), left, offset)
                    if not done:
                        raise DeltaError(f"{base.name}: the delta copies bytes {offset}-{offset + left} it lacks")
                    left, offset = left - done, offset + done
            elif op == OP_XOR:
                before = os.pread(old.fileno(), len(data_or_length), a)
                if len(before) != len(data_or_length):
                    raise DeltaError(f"{base.name}: the delta patches bytes {a}-{a + len(data_or_length)} it lacks")
                new.write(_xor(before, data_or_length))
            else:
                new.write(data_or_length)


def _patches_in_place(ops: list, size: int, path: Path) -> bool:
    """True if the ops keep every page where it is: then only changed pages are written
    (the usual case for memory dumped twice from one process; much less I/O in downtime)."""
    if not path.exists() or path.stat().st_size != size:
        return False
    position = 0
    for op, a, data_or_length in ops:
        if op in (OP_COPY, OP_XOR) and a != position:
            return False
        position += _length(op, data_or_length)
    return position == size


FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE = 0x08, 0x20
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _reshape(path: Path, ops: list, size: int) -> bool:
    """Apply ops that keep most of the base's pages in order (pages mapped or unmapped
    between the two dumps shift the rest) by inserting and removing page ranges in the
    file itself (``fallocate`` INSERT_RANGE / COLLAPSE_RANGE: the file system moves
    extents, not bytes) instead of copying every page into a new file (0.15-0.35 s for
    125 MB).  The few pages taken out of order (a zero page matched anywhere) are read
    first and written like new ones.  False, with the file untouched, where the file
    system cannot or too much is out of order (then the file is rebuilt)."""
    block = os.statvfs(path).f_bsize
    if PAGE % block or path.stat().st_size % PAGE:
        return False
    if any(_length(op, data_or_length) % PAGE for op, _, data_or_length in ops):
        return False
    with open(path, "r+b") as handle:
        fd = handle.fileno()
        try:
            _fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 0)
        except OSError as probe:
            if probe.errno != errno.EINVAL:       # EINVAL: supported, only the range is empty
                return False
        ops = _in_base_order(ops, fd)
        if ops is None:
            return False
        position = base = 0                      # in the new file; the base byte now at ``position``
        file_size = os.fstat(fd).st_size
        for op, a, data_or_length in ops:
            if op != OP_DATA and a > base:       # base pages the new dump no longer has
                gone = a - base
                if position + gone < file_size:
                    _fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, position, gone)
                else:
                    os.ftruncate(fd, position)
                file_size -= gone
                base = a
            if op == OP_COPY:
                position, base = position + data_or_length, base + data_or_length
            elif op == OP_XOR:
                os.pwrite(fd, _xor(os.pread(fd, len(data_or_length), position), data_or_length), position)
                position, base = position + len(data_or_length), base + len(data_or_length)
            else:                                # new pages: room is made where they go
                if position < file_size:
                    _fallocate(fd, FALLOC_FL_INSERT_RANGE, position, len(data_or_length))
                file_size += len(data_or_length)
                os.pwrite(fd, data_or_length, position)
                position += len(data_or_length)
        if position < file_size:
            os.ftruncate(fd, position)
    if path.stat().st_size != size:
        raise DeltaError(f"{path.name}: reshaped to {path.stat().st_size} bytes, expected {size}")
    return True


OUT_OF_ORDER_BYTES = 16 << 20    # at most this much is read ahead to keep a file in place


def _in_base_order(ops: list, fd: int) -> list | None:
    """The ops with every copy or XOR that reads the base out of order (not in the
    longest run of base offsets that only grows) turned into data read from the base
    now, before the file changes; None if that is more than ``OUT_OF_ORDER_BYTES``."""
    reads = [i for i, (op, _, _) in enumerate(ops) if op != OP_DATA]
    keep = set(_increasing_run(reads, ops))
    moved = 0
    result = []
    for i, (op, a, data_or_length) in enumerate(ops):
        if op == OP_DATA or i in keep:
            result.append((op, a, data_or_length))
            continue
        length = _length(op, data_or_length)
        moved += length
        if moved > OUT_OF_ORDER_BYTES:
            return None
        data = os.pread(fd, length, a)
        if len(data) != length:
            raise DeltaError(f"the delta reads base bytes {a}-{a + length} the base lacks")
        result.append((OP_DATA, None, _xor(data, data_or_length) if op == OP_XOR else data))
    return result


def _increasing_run(reads: list[int], ops: list) -> list[int]:
    """Indices (of ``reads``) of a longest run of ops whose base ranges follow each other
    without overlap (patience sorting on their start offsets)."""
    tails: list[int] = []          # tails[k]: index of the op ending the best run of length k + 1
    ends: list[int] = []           # its base end offset
    before: dict[int, int] = {}
    for i in reads:
        op, a, data_or_length = ops[i]
        end = a + _length(op, data_or_length)
        k = bisect.bisect_right(ends, a)       # runs whose last range ends at or before a
        if k:
            before[i] = tails[k - 1]
        if k == len(tails):
            tails.append(i), ends.append(end)
        elif end < ends[k]:
            tails[k], ends[k] = i, end
    run, i = [], tails[-1] if tails else None
    while i is not None:
        run.append(i)
        i = before.get(i)
    return run[::-1]


def _patch(path: Path, ops: list, mode: int) -> None:
    with open(path, "r+b") as handle:
        position = 0
        for op, _, data_or_length in ops:
            if op == OP_COPY:
                position += data_or_length
                continue
            if op == OP_XOR:
                handle.seek(position)
                data = _xor(handle.read(len(data_or_length)), data_or_length)
            else:
                data = data_or_length
            handle.seek(position)
            handle.write(data)
            position += len(data)
    os.chmod(path, mode)
