"""sd_image: layout of the Raspberry Pi 3B SD-card image (build/rpi3-sd.img).

make-sd-image.py writes it; the kernel's `sdhci` self-tests (Arch/aarch64/SDHostSuite.swift,
`SDTestImage`) read its MBR, FAT boot sector and swap-partition pattern and write into the
swap partition's scratch area; the two must agree.

Units are 512-byte sectors. The image is 128 MiB, a power of two as QEMU's SD card model
requires:
    MBR (DOS label)
    partition 1  [8192, 139264)    FAT32 (type 0x0C, bootable): the GPU firmware
                                   (bootcode.bin, start.elf, fixup.dat), config.txt, kernel8.img
    partition 2  [139264, 262144)  swap (type 0x82). Its first 64 sectors hold the pattern
                                   word k of sector s (relative to the partition) =
                                   (s << 16 | k) ^ 0x5344_494D_0000_0000 ("SDIM");
                                   the sdhci self-tests write scratch data into sectors
                                   128..151 and the swap self-tests (swap_pager, pageout)
                                   swap on sectors 1024..9215 (their headers, "SWIFTSWP"
                                   then layout version 2 as a little-endian u32, at 1024
                                   and, split in two devices, 5120); every other sector of
                                   the partition stays zero.
check-sd-image.py verifies that after a boot (check_image).
"""

from __future__ import annotations

import struct
from typing import List, Tuple

SECTOR_BYTES = 512
IMAGE_BYTES = 128 << 20
BOOT_START = 8192
BOOT_SECTORS = 131072
SWAP_START = BOOT_START + BOOT_SECTORS
SWAP_SECTORS = IMAGE_BYTES // SECTOR_BYTES - SWAP_START
BOOT_TYPE = 0x0C
SWAP_TYPE = 0x82
PATTERN_SECTORS = 64
PATTERN_MAGIC = 0x5344_494D_0000_0000
# Partition-relative [first, end) sectors the kernel's self-tests may write.
SCRATCH_SECTORS = (128, 152)              # sdhci suite (SDTestImage.scratchOffset)
SWAP_TEST_WINDOW = (1024, 1024 + 8192)    # Platform.swapTestDisk (Arch/aarch64/Board.swift)
SWAP_HEADER_MAGIC = b"SWIFTSWP"           # SwapHeader.magic, little-endian
SWAP_HEADER_VERSION = 2                   # SwapHeader.version (Kernel/Swap/SwapHeader.swift)

CONFIG_TXT = """# Raspberry Pi 3B: boot the 64-bit swift-vm-kernel (kernel8.img at 0x80000).
arm_64bit=1
kernel=kernel8.img
# Serial console: the kernel routes GPIO 14/15 to the PL011 and sets 115200 8N1 itself,
# from this UART reference clock.
enable_uart=1
init_uart_clock=48000000
"""


def sfdisk_script() -> str:
    """The partition table as sfdisk input."""
    return (
        "label: dos\nlabel-id: 0x5357494d\n"
        f"start={BOOT_START}, size={BOOT_SECTORS}, type={BOOT_TYPE:x}, bootable\n"
        f"start={SWAP_START}, size={SWAP_SECTORS}, type={SWAP_TYPE:x}\n"
    )


def pattern_sector(sector: int) -> bytes:
    """Sector `sector` (relative to the swap partition) of the host pattern."""
    return b"".join(struct.pack("<Q", ((sector << 16) | k) ^ PATTERN_MAGIC) for k in range(SECTOR_BYTES // 8))


def pattern() -> bytes:
    """The pattern at the start of the swap partition."""
    return b"".join(pattern_sector(s) for s in range(PATTERN_SECTORS))


def partitions(mbr: bytes) -> List[Tuple[int, int, int, bool]]:
    """(type, start, sectors, bootable) of the four primary entries of an MBR."""
    if mbr[510:512] != b"\x55\xaa":
        raise ValueError("no MBR signature")
    entries = []
    for index in range(4):
        entry = mbr[446 + 16 * index: 462 + 16 * index]
        start, count = struct.unpack("<II", entry[8:16])
        entries.append((entry[4], start, count, entry[0] == 0x80))
    return entries


def check_image(data: bytes) -> List[str]:
    """Problems with an image after a raspi3b self-test boot; empty when the MBR is the
    layout's, the host pattern is intact, the swap tests left their header at the start of
    their window, and every other sector of the swap partition is still zero."""
    if len(data) != IMAGE_BYTES:
        return [f"image is {len(data)} bytes, expected {IMAGE_BYTES}"]
    problems: List[str] = []
    try:
        parts = partitions(data[:SECTOR_BYTES])
    except ValueError as error:
        return [f"MBR: {error}"]
    if parts[:2] != [(BOOT_TYPE, BOOT_START, BOOT_SECTORS, True), (SWAP_TYPE, SWAP_START, SWAP_SECTORS, False)]:
        problems.append(f"MBR partitions changed: {parts[:2]}")

    def sectors(first: int, end: int) -> bytes:
        return data[(SWAP_START + first) * SECTOR_BYTES:(SWAP_START + end) * SECTOR_BYTES]

    bad = [s for s in range(PATTERN_SECTORS) if sectors(s, s + 1) != pattern_sector(s)]
    if bad:
        problems.append(f"host pattern changed: swap-partition sectors {bad[0]}..{bad[-1]} ({len(bad)} sectors)")
    untouched = [(PATTERN_SECTORS, SCRATCH_SECTORS[0]), (SCRATCH_SECTORS[1], SWAP_TEST_WINDOW[0]),
                 (SWAP_TEST_WINDOW[1], SWAP_SECTORS)]
    for first, end in untouched:
        region = sectors(first, end)
        if region.count(0) != len(region):
            written = [s for s in range(first, end) if sectors(s, s + 1).count(0) != SECTOR_BYTES]
            problems.append(f"sectors no test may write were written: swap-partition sectors "
                            f"{written[0]}..{written[-1]} ({len(written)} sectors)")
    header = sectors(SWAP_TEST_WINDOW[0], SWAP_TEST_WINDOW[0] + 1)
    if header[:8] != SWAP_HEADER_MAGIC:
        problems.append(f"no swap header at swap-partition sector {SWAP_TEST_WINDOW[0]}: "
                        "the swap tests did not swap on the SD card")
    elif struct.unpack_from("<I", header, 8)[0] != SWAP_HEADER_VERSION:
        problems.append(f"swap header at swap-partition sector {SWAP_TEST_WINDOW[0]} has version "
                        f"{struct.unpack_from('<I', header, 8)[0]}, expected {SWAP_HEADER_VERSION}")
    return problems
