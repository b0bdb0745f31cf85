#!/usr/bin/env python3
"""check-disk-image: after a self-test boot, verifies on the host that the disk image holds
exactly what the kernel's virtio_blk suite wrote (and that nothing else changed).

Usage: python3 scripts/check-disk-image.py IMAGE.img
Exit status: 0 when the image is as expected, 1 otherwise (each problem is printed), 2 on
usage errors. Layout and patterns: scripts/disk_image.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import disk_image  # noqa: E402


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as handle:
            data = handle.read()
    except OSError as error:
        print(f"check-disk-image: {error}", file=sys.stderr)
        return 2
    problems = disk_image.check_image(data)
    for problem in problems:
        print(f"check-disk-image: {argv[1]}: {problem}")
    if problems:
        return 1
    first, end = disk_image.KERNEL_REGION
    print(f"check-disk-image: {argv[1]}: kernel writes verified (sectors {first}..{end - 1}), "
          f"host region intact")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
