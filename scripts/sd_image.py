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
                                   from sector 128 on the self-tests write scratch data.
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
