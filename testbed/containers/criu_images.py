"""CRIU's image files, as far as the testbed reads them (pagemaps, for the delta encoder
and the post-copy relay): two magic words, then entries of a little-endian u32 length
and a protobuf message, whose scalar fields are returned by number."""

from __future__ import annotations

import struct
from pathlib import Path

MAGICS = 8      # CRIU's common magic and the image's own


def image_entries(path: Path) -> list[dict[int, int]]:
    """The entries of an image, each its scalar fields by number; ValueError naming the file
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


def _fields(message: bytes, path: Path, offset: int) -> dict[int, int]:
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
