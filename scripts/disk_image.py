"""disk_image: layout and byte patterns of the virtio-blk test disk (the swap device).

The host writes the image (make-disk-image.py), the kernel's `virtio_blk` self-tests read it
and write into it, and check-disk-image.py verifies afterwards what the kernel wrote. The
kernel's copy of these constants is in Kernel/SelfTest/VirtioBlockSuite.swift
(`VirtioTestDisk`); the two must agree.

Units are 512-byte sectors. Every sector of a fresh image holds the HOST pattern. Word k
(0..63, little-endian u64) of sector s is

    HOST:   (s << 16 | k) ^ 0x484F_5354_0000_0000     ("HOST")
    KERNEL: (s << 16 | k) ^ 0x4B45_524E_0000_0000     ("KERN")

so a sector written to the wrong place, or only partly, does not match.

Layout:
    [0, 4096)         host region: the kernel only reads it
    [4096, 4496)      kernel region: the self-tests write the KERNEL pattern over all of it
                      (round trip 8, multi-page 128, in flight 256, flush 8 sectors)
    [4496, 8192)      must stay untouched by the self-tests (rejected requests aim here)
    [8192, 16384)     benchmark scratch (make bench writes anything here)
"""

from __future__ import annotations

import struct
from typing import Iterator, List, Optional, Tuple

SECTOR_BYTES = 512
WORDS_PER_SECTOR = SECTOR_BYTES // 8
SECTOR_COUNT = 16384                      # 8 MiB
HOST_MAGIC = 0x484F_5354_0000_0000
KERNEL_MAGIC = 0x4B45_524E_0000_0000

HOST_REGION = (0, 4096)
# (name, first sector, sector count): the self-tests that write, in disk order.
KERNEL_WRITES = [
    ("write_then_read_round_trips", 4096, 8),
    ("multi_page_request_moves_discontiguous_pages", 4104, 128),
    ("many_requests_in_flight_complete_in_any_order", 4232, 256),
    ("flush_after_write_succeeds", 4488, 8),
]
KERNEL_REGION = (4096, 4496)
UNTOUCHED_REGION = (4496, 8192)
BENCH_REGION = (8192, SECTOR_COUNT)

_PACK = struct.Struct("<%dQ" % WORDS_PER_SECTOR)


def sector_pattern(sector: int, magic: int) -> bytes:
    """The 512 bytes of `sector` in the pattern with `magic`."""
    return _PACK.pack(*[((sector << 16) | k) ^ magic for k in range(WORDS_PER_SECTOR)])


def host_image_bytes(sector_count: int = SECTOR_COUNT) -> bytes:
    """A fresh image: every sector in the HOST pattern."""
    return b"".join(sector_pattern(s, HOST_MAGIC) for s in range(sector_count))


def write_image(path: str, sector_count: int = SECTOR_COUNT) -> None:
    with open(path, "wb") as handle:
        handle.write(host_image_bytes(sector_count))


def _runs(sectors: List[int]) -> Iterator[Tuple[int, int]]:
    """Groups sorted sector numbers into (first, count) runs."""
    start: Optional[int] = None
    previous = -2
    for sector in sectors:
        if sector != previous + 1:
            if start is not None:
                yield start, previous - start + 1
            start = sector
        previous = sector
    if start is not None:
        yield start, previous - start + 1


def check_image(data: bytes) -> List[str]:
    """Problems with an image after a self-test run; empty when the kernel wrote exactly what
    the layout says (and nothing outside the kernel and benchmark regions)."""
    problems: List[str] = []
    if len(data) != SECTOR_COUNT * SECTOR_BYTES:
        return [f"image is {len(data)} bytes, expected {SECTOR_COUNT * SECTOR_BYTES}"]

    def mismatches(first: int, end: int, magic: int) -> List[int]:
        return [s for s in range(first, end)
                if data[s * SECTOR_BYTES:(s + 1) * SECTOR_BYTES] != sector_pattern(s, magic)]

    for region, magic, what in ((HOST_REGION, HOST_MAGIC, "host region changed (the kernel must only read it)"),
                                (UNTOUCHED_REGION, HOST_MAGIC, "sectors written that no test may write "
                                                               "(a rejected request reached the disk?)")):
        for first, count in _runs(mismatches(region[0], region[1], magic)):
            problems.append(f"{what}: sectors {first}..{first + count - 1}")
    for name, first, count in KERNEL_WRITES:
        bad = mismatches(first, first + count, KERNEL_MAGIC)
        for run_first, run_count in _runs(bad):
            problems.append(f"{name}: sectors {run_first}..{run_first + run_count - 1} "
                            f"do not hold the kernel pattern")
    return problems
