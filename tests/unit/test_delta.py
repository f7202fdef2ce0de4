"""Delta encoders: whatever changed between two checkpoints, base + delta == new."""

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import struct

from testbed.migration.delta import PAGE, DeltaError, encoder, page_addresses

NAMES = ["pages", "rsync"]


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def round_trip(tmp: Path, name: str, base: dict, new: dict) -> dict:
    """Encode new against base, apply to a copy of base, and return the encoder's report."""
    base_dir, new_dir, target = tmp / "base", tmp / "new", tmp / "target"
    write_tree(base_dir, base), write_tree(new_dir, new), write_tree(target, base)
    report = encoder(name).encode(new_dir, base_dir, tmp / "out" / "delta")
    assert read_tree(base_dir) == base                     # the base is left alone
    encoder(name).apply(tmp / "out" / "delta", target)
    assert read_tree(target) == new
    return report


def pages(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n * PAGE)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_changed_pages_cost_a_few_pages(tmp_path, name):
    base = pages(256, 1)
    new = bytearray(base)
    for index in (3, 100, 101, 200):
        new[index * PAGE + 17:index * PAGE + 40] = os.urandom(23)
    report = round_trip(tmp_path, name, {"pages-1.img": base, "core.img": b"core"},
                        {"pages-1.img": bytes(new), "core.img": b"core2"})
    assert report["bytes"] < 6 * PAGE                      # against 256 pages in full


def test_pages_that_moved_are_found_anywhere_in_the_base(tmp_path):
    base = pages(64, 2)
    new = base[32 * PAGE:] + base[:32 * PAGE]             # same memory, other file offsets
    report = round_trip(tmp_path, "pages", {"pages-1.img": base}, {"pages-1.img": new})
    assert report["literal_bytes"] == 0 and report["bytes"] < PAGE


@pytest.mark.parametrize("name", NAMES)
def test_files_added_removed_grown_and_shrunk(tmp_path, name):
    base = {"pages-1.img": pages(8, 3), "pages-2.img": pages(8, 4), "gone.img": b"x" * 10, "odd": b"abc"}
    new = {"pages-1.img": pages(8, 3) + pages(4, 5), "pages-2.img": pages(8, 4)[:3 * PAGE],
           "sub/new.img": b"fresh", "odd": b"abcd"}
    round_trip(tmp_path, name, base, new)


def test_a_damaged_delta_is_refused_and_the_target_kept(tmp_path):
    write_tree(tmp_path / "target", {"a": b"keep"})
    bad = tmp_path / "delta"
    bad.write_bytes(b"not a delta at all")
    with pytest.raises(DeltaError, match="not a page delta"):
        encoder("pages").apply(bad, tmp_path / "target")
    assert read_tree(tmp_path / "target") == {"a": b"keep"}


@pytest.mark.parametrize("name", NAMES)
def test_a_delta_cut_short_is_refused_by_name_and_the_target_kept(tmp_path, name):
    base, new = {"pages-1.img": pages(8, 3)}, {"pages-1.img": pages(6, 3) + pages(2, 9)}
    write_tree(tmp_path / "base", base), write_tree(tmp_path / "new", new), write_tree(tmp_path / "target", base)
    delta = tmp_path / "out" / "delta"
    encoder(name).encode(tmp_path / "new", tmp_path / "base", delta)
    delta.write_bytes(delta.read_bytes()[:-20])             # the end of the compressed body lost in transit
    with pytest.raises(DeltaError, match=f"{delta}: its compressed body is damaged"):
        encoder(name).apply(delta, tmp_path / "target")
    assert read_tree(tmp_path / "target") == base


def test_unknown_encoder_is_named():
    with pytest.raises(ValueError, match="'zstd'"):
        encoder("zstd")


@settings(max_examples=40, deadline=None)
@given(n_base=st.integers(0, 12), n_new=st.integers(0, 12), seed=st.integers(0, 2**16),
       edits=st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["flip", "copy", "zero"])), max_size=8))
def test_pages_round_trip_any_edit(tmp_path_factory, n_base, n_new, seed, edits):
    base = pages(n_base, seed)
    new = bytearray(pages(n_new, seed) if n_new <= n_base else base + pages(n_new - n_base, seed + 1))
    new = new[:n_new * PAGE]
    for index, edit in edits:
        if index >= n_new:
            continue
        page = slice(index * PAGE, (index + 1) * PAGE)
        if edit == "flip":
            new[index * PAGE] ^= 0xFF
        elif edit == "copy" and n_base:
            new[page] = base[(index * 7 % n_base) * PAGE:(index * 7 % n_base + 1) * PAGE]
        else:
            new[page] = bytes(PAGE)
    round_trip(tmp_path_factory.mktemp("delta"), "pages", {"pages-1.img": base}, {"pages-1.img": bytes(new)})


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def pagemap(pages_id: int, runs: list[tuple[int, int, int]]) -> bytes:
    """A CRIU pagemap image: magics, the head, then (vaddr, nr_pages, flags) runs."""
    messages = [b"\x08" + varint(pages_id)]
    for vaddr, count, flags in runs:
        messages.append(b"\x08" + varint(vaddr) + b"\x10\x00" + b"\x20" + varint(flags) + b"\x28" + varint(count))
    return struct.pack("<II", 0x54564319, 0x56084025) + b"".join(struct.pack("<I", len(m)) + m for m in messages)


def test_page_addresses_follow_the_pagemap(tmp_path):
    image = tmp_path / "pagemap-1.img"
    image.write_bytes(pagemap(7, [(0x1000, 2, 4), (0x9000, 3, 1 | 4), (0x20000, 1, 4)]))
    name, addresses = page_addresses(image)
    assert name == "pages-7.img"
    assert addresses.tolist() == [0x1000, 0x2000, 0x20000]       # the run in a parent image has no pages here


def test_a_damaged_pagemap_names_the_byte(tmp_path):
    image = tmp_path / "pagemap-1.img"
    image.write_bytes(pagemap(1, [(0x1000, 2, 4)])[:-3])
    with pytest.raises(DeltaError, match="pagemap-1.img: entry at byte 14 runs past the end"):
        page_addresses(image)


def test_pages_changed_in_place_after_new_memory_cost_only_their_change(tmp_path):
    """A region mapped since the first dump shifts every later page in pages-1.img;
    pages edited in place are still XORed against their own old contents."""
    old_memory = pages(64, 6)
    grown = pages(16, 7)                                     # new memory: must be sent
    edited = bytearray(old_memory)
    for index in range(32, 64):                              # every page after the new region edited a little
        edited[index * PAGE + 5] ^= 0x5A
    base = {"pagemap-1.img": pagemap(1, [(0x10000, 64, 4)]), "pages-1.img": old_memory}
    new = {"pagemap-1.img": pagemap(1, [(0x10000, 32, 4), (0x10000 + 32 * PAGE + 0x100000, 16, 4),
                                        (0x10000 + 32 * PAGE, 32, 4)]),
           "pages-1.img": bytes(edited[:32 * PAGE]) + grown + bytes(edited[32 * PAGE:])}
    report = round_trip(tmp_path, "pages", base, new)
    assert report["literal_bytes"] == 48 * PAGE + len(new["pagemap-1.img"])    # 16 new pages, 32 XORs
    assert report["bytes"] < 16 * PAGE + 4 * PAGE             # the XORs compress to almost nothing


def test_pages_renumbered_by_criu_are_matched_through_the_pagemap(tmp_path):
    memory = pages(32, 8)
    changed = bytearray(memory)
    changed[3 * PAGE] ^= 1
    base = {"pagemap-1.img": pagemap(1, [(0x10000, 32, 4)]), "pages-1.img": memory}
    new = {"pagemap-1.img": pagemap(2, [(0x10000, 32, 4)]), "pages-2.img": bytes(changed)}
    report = round_trip(tmp_path, "pages", base, new)      # pages-1.img is gone afterwards
    assert report["literal_bytes"] == PAGE + len(new["pagemap-1.img"])


def test_pages_mapped_and_unmapped_between_dumps_are_applied_without_rewriting_the_file(tmp_path):
    """New pages in the middle and pages gone elsewhere shift the rest of pages-1.img: the
    destination inserts and removes those ranges in the file it has (same inode), not a copy;
    a page copied from out of order is read before the file changes."""
    memory = pages(96, 9)
    new_memory = memory[:20 * PAGE] + pages(3, 10) + memory[20 * PAGE:50 * PAGE] + memory[60 * PAGE:]
    edited = bytearray(new_memory)
    edited[70 * PAGE + 9] ^= 0x77                           # and one page changed in place,
    edited[40 * PAGE:41 * PAGE] = memory[5 * PAGE:6 * PAGE]   # one now equal to a page far before it
    start = 0x10000
    base = {"pagemap-1.img": pagemap(1, [(start, 96, 4)]), "pages-1.img": memory}
    new = {"pagemap-1.img": pagemap(1, [(start, 20, 4), (0x900000, 3, 4), (start + 20 * PAGE, 30, 4),
                                        (start + 60 * PAGE, 36, 4)]),
           "pages-1.img": bytes(edited)}
    base_dir, new_dir, target = tmp_path / "base", tmp_path / "new", tmp_path / "target"
    write_tree(base_dir, base), write_tree(new_dir, new), write_tree(target, base)
    inode = (target / "pages-1.img").stat().st_ino
    report = encoder("pages").encode(new_dir, base_dir, tmp_path / "delta")
    encoder("pages").apply(tmp_path / "delta", target)
    assert read_tree(target) == new
    assert (target / "pages-1.img").stat().st_ino == inode
    assert report["literal_bytes"] == 4 * PAGE + len(new["pagemap-1.img"])   # three new pages, one XOR
