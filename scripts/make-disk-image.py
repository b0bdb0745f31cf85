#!/usr/bin/env python3
"""make-disk-image: writes a fresh virtio-blk test disk (every sector in the HOST pattern).

Usage: python3 scripts/make-disk-image.py OUTPUT.img
Layout and patterns: scripts/disk_image.py. Python standard library only.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import disk_image  # noqa: E402


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    directory = os.path.dirname(argv[1])
    if directory:
        os.makedirs(directory, exist_ok=True)
    disk_image.write_image(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
