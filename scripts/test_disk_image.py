"""Tests of the virtio-blk test disk's layout, patterns and host-side check."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import disk_image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def kernel_written(data: bytearray) -> bytearray:
    """`data` with the KERNEL pattern over every sector the self-tests write."""
    for _, first, count in disk_image.KERNEL_WRITES:
        for sector in range(first, first + count):
            offset = sector * disk_image.SECTOR_BYTES
            data[offset:offset + disk_image.SECTOR_BYTES] = disk_image.sector_pattern(sector, disk_image.KERNEL_MAGIC)
    return data


class DiskImageTests(unittest.TestCase):
    def test_patterns_differ_per_sector_and_magic(self):
        self.assertNotEqual(disk_image.sector_pattern(1, disk_image.HOST_MAGIC),
                            disk_image.sector_pattern(2, disk_image.HOST_MAGIC))
        self.assertNotEqual(disk_image.sector_pattern(1, disk_image.HOST_MAGIC),
                            disk_image.sector_pattern(1, disk_image.KERNEL_MAGIC))
        self.assertEqual(len(disk_image.sector_pattern(7, disk_image.HOST_MAGIC)), 512)

    def test_word_layout_matches_kernel_formula(self):
        word = disk_image.sector_pattern(0x1234, disk_image.KERNEL_MAGIC)[8 * 5:8 * 6]
        self.assertEqual(int.from_bytes(word, "little"), (0x1234 << 16 | 5) ^ 0x4B45_524E_0000_0000)

    def test_kernel_writes_tile_the_kernel_region(self):
        position = disk_image.KERNEL_REGION[0]
        for _, first, count in disk_image.KERNEL_WRITES:
            self.assertEqual(first, position)
            position += count
        self.assertEqual(position, disk_image.KERNEL_REGION[1])
        self.assertEqual(disk_image.UNTOUCHED_REGION[0], disk_image.KERNEL_REGION[1])

    def test_fresh_image_fails_because_kernel_wrote_nothing(self):
        problems = disk_image.check_image(disk_image.host_image_bytes())
        self.assertEqual(len(problems), len(disk_image.KERNEL_WRITES))

    def test_image_with_every_kernel_write_passes(self):
        data = kernel_written(bytearray(disk_image.host_image_bytes()))
        self.assertEqual(disk_image.check_image(bytes(data)), [])

    def test_stray_write_outside_kernel_region_is_reported(self):
        data = kernel_written(bytearray(disk_image.host_image_bytes()))
        offset = 5000 * disk_image.SECTOR_BYTES
        data[offset] ^= 0xFF
        problems = disk_image.check_image(bytes(data))
        self.assertEqual(len(problems), 1)
        self.assertIn("5000..5000", problems[0])

    def test_misplaced_kernel_sector_is_reported(self):
        data = kernel_written(bytearray(disk_image.host_image_bytes()))
        offset = 4100 * disk_image.SECTOR_BYTES
        data[offset:offset + 512] = disk_image.sector_pattern(4101, disk_image.KERNEL_MAGIC)
        problems = disk_image.check_image(bytes(data))
        self.assertEqual(len(problems), 1)
        self.assertIn("write_then_read_round_trips", problems[0])

    def test_scripts_round_trip_through_a_file(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "disk", "swap.img")
            subprocess.run([sys.executable, os.path.join(HERE, "make-disk-image.py"), path], check=True)
            self.assertEqual(os.path.getsize(path), disk_image.SECTOR_COUNT * disk_image.SECTOR_BYTES)
            fresh = subprocess.run([sys.executable, os.path.join(HERE, "check-disk-image.py"), path],
                                   capture_output=True, text=True)
            self.assertEqual(fresh.returncode, 1)
            with open(path, "rb") as handle:
                data = kernel_written(bytearray(handle.read()))
            with open(path, "wb") as handle:
                handle.write(data)
            written = subprocess.run([sys.executable, os.path.join(HERE, "check-disk-image.py"), path],
                                     capture_output=True, text=True)
            self.assertEqual(written.returncode, 0, written.stdout)


if __name__ == "__main__":
    unittest.main()
