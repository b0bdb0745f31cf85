#!/usr/bin/env python3
"""check-sd-image: after a raspi3b self-test boot, verifies on the host that the SD-card image
still holds the host pattern at the start of the swap partition, that the swap tests swapped
on their window of it (their header is there) and that nothing else in the partition was
written.

Usage: python3 scripts/check-sd-image.py IMAGE.img
Exit status: 0 when the image is as expected, 1 otherwise (each problem is printed), 2 on
usage errors. Layout: scripts/sd_image.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_check  # noqa: E402
import sd_image  # noqa: E402


def main(argv):
    first, end = sd_image.SWAP_TEST_WINDOW
    return image_check.run(argv, "check-sd-image", __doc__, sd_image.check_image,
                           lambda: f"host pattern intact, swap tests on swap-partition sectors "
                                   f"{first}..{end - 1}, nothing else written")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
