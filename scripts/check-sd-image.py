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
import sd_image  # noqa: E402


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as handle:
            data = handle.read()
    except OSError as error:
        print(f"check-sd-image: {error}", file=sys.stderr)
        return 2
    problems = sd_image.check_image(data)
    for problem in problems:
        print(f"check-sd-image: {argv[1]}: {problem}")
    if problems:
        return 1
    first, end = sd_image.SWAP_TEST_WINDOW
    print(f"check-sd-image: {argv[1]}: host pattern intact, swap tests on swap-partition sectors "
          f"{first}..{end - 1}, nothing else written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
