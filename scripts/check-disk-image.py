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
import image_check  # noqa: E402
import disk_image  # noqa: E402


def main(argv):
    first, end = disk_image.KERNEL_REGION
    return image_check.run(argv, "check-disk-image", __doc__, disk_image.check_image,
                           lambda: f"kernel writes verified (sectors {first}..{end - 1}), "
                                   f"host region intact")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
