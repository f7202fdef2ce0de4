"""CRIU's image files, as far as the testbed reads them (pagemaps, for the delta encoder
and the post-copy relay; threads' cores, for the pages a restore touches): two magic
words, then entries of a little-endian u32 length and a protobuf message, whose fields
are returned by number (scalars as numbers, nested messages as their bytes, which know
where in the file they start, so that an error inside one names the file's byte)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MAGICS = 8      # CRIU's common magic and the image's own
PAGE = 4096
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 1 << 1, 1 << 2    # pagemap entry flags


def image_entries(path: Path) -> list[dict[int, int | bytes]]:
    """The entries of an image, each its fields by number; ValueError naming the file
    and the byte where it is malformed."""
    data = path.read_bytes()
    pos, entries = MAGICS, []
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"{path}: truncated entry at byte {pos}")
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + length > len(data):
            raise ValueError(f"{path}: entry at byte {pos - 4} runs past the end")
        entries.append(_fields(data[pos:pos + length], path, pos))
        pos += length
    return entries


class Nested(bytes):
    """A length-delimited field's bytes and ``offset``, the file's byte where they start."""

    offset: int

    def __new__(cls, data: bytes, offset: int):
        nested = super().__new__(cls, data)
        nested.offset = offset
        return nested


def nested_fields(message: Nested, path: Path) -> dict[int, int | bytes]:
    """The fields of a nested message, errors naming the file's byte."""
    return _fields(message, path, message.offset)


def _fields(message: bytes, path: Path, offset: int) -> dict[int, int | bytes]:
    fields, pos = {}, 0
    while pos < len(message):
        key, pos = _varint(message, pos, path, offset)
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields[number], pos = _varint(message, pos, path, offset)
        elif wire == 1:
            fields[number] = struct.unpack_from("<Q", message, pos)[0]
            pos += 8
        elif wire == 5:
            fields[number] = struct.unpack_from("<I", message, pos)[0]
            pos += 4
        elif wire == 2:
            length, pos = _varint(message, pos, path, offset)
            if pos + length > len(message):
                raise ValueError(f"{path}: field {number} runs past its entry at byte {offset + pos}")
            fields[number] = Nested(message[pos:pos + length], offset + pos)
            pos += length
        else:
            raise ValueError(f"{path}: unsupported protobuf wire type {wire} at byte {offset + pos}")
    return fields


def _varint(data: bytes, pos: int, path: Path, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError(f"{path}: varint runs past its entry at byte {offset + pos}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def rseq_pages(images: Path) -> set[int]:
    """The page of every thread's rseq area (``core-*.img``: ``core_entry {thread_core = 5
    {rseq_entry = 15 {rseq_abi_pointer = 1}}}``).  A restore registers each thread's area
    with the kernel, which writes it at once: under post-copy each such page is a fault,
    one round trip to the source apiece while the service is still down."""
    pages = set()
    for core in sorted(images.glob("core-*.img")):
        entries = image_entries(core)
        thread = entries[0].get(5) if entries else None
        rseq = nested_fields(thread, core).get(15) if isinstance(thread, Nested) else None
        pointer = nested_fields(rseq, core).get(1) if isinstance(rseq, Nested) else None
        if isinstance(pointer, int) and pointer:
            pages.add(pointer - pointer % PAGE)
    return pages


def stored_pages(pagemap: Path) -> tuple[str, np.ndarray]:
    """The ``pages-*.img`` a ``pagemap-*.img`` describes, and the virtual address of every
    page stored in it, in file order; ValueError when the pagemap is malformed.

    Its entries: ``pagemap_head {pages_id = 1}``, then per run of pages ``pagemap_entry
    {vaddr = 1, compat_nr_pages = 2, in_parent = 3, flags = 4, nr_pages = 5}``; runs
    flagged present and not in a parent image have their pages in the file."""
    import numpy as np     # here, not at the top: the post-copy relay, which starts as the restore
                           # waits on it, reads only lazy ranges (numpy is most of its start)

    entries = image_entries(pagemap)
    if not entries or 1 not in entries[0]:
        raise ValueError(f"{pagemap}: no pagemap head")
    runs = []
    for entry in entries[1:]:
        flags = entry.get(4, PE_PARENT if entry.get(3) else PE_PRESENT)
        pages = entry.get(5) or entry.get(2, 0)
        if flags & PE_PRESENT and not flags & PE_PARENT and pages:
            runs.append(entry[1] + PAGE * np.arange(pages, dtype=np.uint64))
    addresses = np.concatenate(runs) if runs else np.zeros(0, dtype=np.uint64)
    return f"pages-{entries[0][1]}.img", addresses
