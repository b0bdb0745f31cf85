#!/usr/bin/env python3
"""make-sd-image: writes the Raspberry Pi 3B SD-card image.

Usage: python3 scripts/make-sd-image.py --kernel build/raspi3b/kernel8.img --output build/rpi3-sd.img
                                        [--firmware build/firmware]

Layout: scripts/sd_image.py. The GPU firmware comes from Debian's raspi-firmware package
(scripts/fetch-raspi-firmware.sh, cached in the firmware directory). Built with sfdisk,
mkfs.fat and mcopy on plain files: no loop devices, no mounts, no root (except the one-time
firmware fetch, which needs apt's sources extended).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_image  # noqa: E402

FIRMWARE_FILES = ("bootcode.bin", "start.elf", "fixup.dat")


def tool(name):
    """Path of a Debian tool, also from the sbin directories a non-root PATH lacks."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if not found:
        raise SystemExit(f"make-sd-image: {name} is missing (scripts/ensure-deps.sh --need-image)")
    return found


def run(*argv, stdin=None):
    subprocess.run(argv, input=stdin, check=True, stdout=subprocess.DEVNULL, text=stdin is not None)


def build_boot_partition(path, kernel, firmware):
    """A FAT32 file system image holding the firmware, config.txt and the kernel."""
    with open(path, "wb") as f:
        f.truncate(sd_image.BOOT_SECTORS * sd_image.SECTOR_BYTES)
    run(tool("mkfs.fat"), "-F", "32", "-s", "1", "-i", "5357494d", "-n", "RPI-BOOT", path)
    with tempfile.TemporaryDirectory() as scratch:
        config = os.path.join(scratch, "config.txt")
        with open(config, "w") as f:
            f.write(sd_image.CONFIG_TXT)
        sources = [os.path.join(firmware, name) for name in FIRMWARE_FILES] + [config]
        run(tool("mcopy"), "-i", path, *sources, "::/")
        run(tool("mcopy"), "-i", path, kernel, "::/kernel8.img")


def write_image(output, kernel, firmware):
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    partial = output + ".partial"
    with open(partial, "wb") as f:
        f.truncate(sd_image.IMAGE_BYTES)
    run(tool("sfdisk"), "--quiet", partial, stdin=sd_image.sfdisk_script())
    boot = partial + ".boot"
    try:
        build_boot_partition(boot, kernel, firmware)
        with open(partial, "r+b") as image, open(boot, "rb") as fat:
            image.seek(sd_image.BOOT_START * sd_image.SECTOR_BYTES)
            shutil.copyfileobj(fat, image)
            image.seek(sd_image.SWAP_START * sd_image.SECTOR_BYTES)
            image.write(sd_image.pattern())
    finally:
        if os.path.exists(boot):
            os.remove(boot)
    os.replace(partial, output)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--firmware", default="build/firmware")
    args = parser.parse_args(argv)
    fetch = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fetch-raspi-firmware.sh")
    if subprocess.run([fetch, args.firmware]).returncode != 0:
        return 1
    write_image(args.output, args.kernel, args.firmware)
    print(f"make-sd-image: {args.output}: FAT32 boot partition (firmware, config.txt, kernel8.img) + swap partition")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
