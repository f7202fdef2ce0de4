"""CRIU's image files, as far as the testbed reads them (pagemaps, for the delta encoder
and the post-copy relay): two magic words, then entries of a little-endian u32 length
and a protobuf message, whose scalar fields are returned by number."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGICS = 8      # CRIU's common magic and the image's own
PAGE = 4096
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 1 << 1, 1 << 2    # pagemap entry flags


def image_entries(path: Path) -> list[dict[int, int | bytes]]:
    """The entries of an image, each its fields by number (scalars as numbers, embedded
    messages and strings as bytes, for ``message_fields``); ValueError naming the file and
    the byte where it is malformed."""
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


def message_fields(message: bytes, path: Path, offset: int = 0) -> dict[int, int | bytes]:
    """An embedded message's fields, as ``image_entries`` gives an entry's."""
    return _fields(message, path, offset)


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
                raise ValueError(f"{path}: field {number} at byte {offset + pos} runs past its entry")
            fields[number] = bytes(message[pos:pos + length])
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


def stored_pages(pagemap: Path) -> tuple[str, np.ndarray]:
    """The ``pages-*.img`` a ``pagemap-*.img`` describes, and the virtual address of every
    page stored in it, in file order; ValueError when the pagemap is malformed.

    Its entries: ``pagemap_head {pages_id = 1}``, then per run of pages ``pagemap_entry
    {vaddr = 1, compat_nr_pages = 2, in_parent = 3, flags = 4, nr_pages = 5}``; runs
    flagged present and not in a parent image have their pages in the file."""
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


def restore_touches(core: Path) -> list[int]:
    """Addresses in a thread's memory that CRIU's restore writes or reads before the thread
    runs (``core-<tid>.img``, x86-64): its stack pointer and the page below, its TLS base,
    the clear-tid word, the robust futex list head and the rseq area (all but the stack in
    the thread's control block).  In a post-copy each is a fault the restore waits on."""
    entry = image_entries(core)[0] if core.stat().st_size > MAGICS else {}
    found = []
    info = entry.get(2)                                   # core_entry.thread_info (thread_info_x86)
    if isinstance(info, bytes):
        info = message_fields(info, core)
        found.append(info.get(1))                         # clear_tid_addr
        regs = info.get(2)                                # gpregs
        if isinstance(regs, bytes):
            regs = message_fields(regs, core)
            stack = regs.get(20)                          # sp
            found += [stack, stack - PAGE if stack else None, regs.get(22)]     # fs_base
    thread = entry.get(5)                                 # core_entry.thread_core
    if isinstance(thread, bytes):
        thread = message_fields(thread, core)
        found.append(thread.get(1))                       # futex_rla
        rseq = thread.get(15)
        if isinstance(rseq, bytes):
            found.append(message_fields(rseq, core).get(1))     # rseq_abi_pointer
    return sorted({address & ~(PAGE - 1) for address in found if isinstance(address, int) and address})
