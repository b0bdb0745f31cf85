"""Tests of the Raspberry Pi SD-card image layout (sd_image.py) and writer (make-sd-image.py).

The writer test builds a real image from stand-in firmware files with sfdisk, mkfs.fat and
mcopy, and is skipped when those tools are missing (scripts/ensure-deps.sh --need-image).
"""

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_image  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "make_sd_image", os.path.join(os.path.dirname(os.path.abspath(__file__)), "make-sd-image.py"))
make_sd_image = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_sd_image)


def _have(tool):
    return shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}") or os.path.exists(f"/sbin/{tool}")


class LayoutTests(unittest.TestCase):
    def test_image_is_a_power_of_two_for_qemus_sd_model(self):
        self.assertEqual(sd_image.IMAGE_BYTES & (sd_image.IMAGE_BYTES - 1), 0)

    def test_partitions_are_aligned_and_fill_the_image(self):
        self.assertEqual(sd_image.BOOT_START % 2048, 0, "1 MiB alignment")
        self.assertEqual(sd_image.SWAP_START % 2048, 0)
        self.assertEqual((sd_image.SWAP_START + sd_image.SWAP_SECTORS) * 512, sd_image.IMAGE_BYTES)

    def test_pattern_words_name_their_sector_and_index(self):
        sector = sd_image.pattern_sector(5)
        self.assertEqual(len(sector), 512)
        word = struct.unpack_from("<Q", sector, 8 * 3)[0]
        self.assertEqual(word ^ sd_image.PATTERN_MAGIC, 5 << 16 | 3)
        self.assertEqual(len(sd_image.pattern()), sd_image.PATTERN_SECTORS * 512)

    def test_config_txt_boots_the_64_bit_kernel_with_the_uart(self):
        lines = sd_image.CONFIG_TXT.splitlines()
        for setting in ("arm_64bit=1", "kernel=kernel8.img", "enable_uart=1"):
            self.assertIn(setting, lines)

    def test_partitions_rejects_a_sector_without_signature(self):
        with self.assertRaises(ValueError):
            sd_image.partitions(bytes(512))


def _booted_image():
    """An image as a good raspi3b boot leaves it: MBR, pattern, swap header, scratch data."""
    data = bytearray(sd_image.IMAGE_BYTES)
    for index, (kind, start, count, boot) in enumerate(
            ((sd_image.BOOT_TYPE, sd_image.BOOT_START, sd_image.BOOT_SECTORS, True),
             (sd_image.SWAP_TYPE, sd_image.SWAP_START, sd_image.SWAP_SECTORS, False))):
        entry = 446 + 16 * index
        data[entry] = 0x80 if boot else 0
        data[entry + 4] = kind
        struct.pack_into("<II", data, entry + 8, start, count)
    data[510:512] = b"\x55\xaa"
    swap = sd_image.SWAP_START * 512
    data[swap:swap + sd_image.PATTERN_SECTORS * 512] = sd_image.pattern()
    data[swap + sd_image.SCRATCH_SECTORS[0] * 512:swap + sd_image.SCRATCH_SECTORS[1] * 512] = \
        b"\x5a" * ((sd_image.SCRATCH_SECTORS[1] - sd_image.SCRATCH_SECTORS[0]) * 512)
    window = swap + sd_image.SWAP_TEST_WINDOW[0] * 512
    data[window:window + 8] = sd_image.SWAP_HEADER_MAGIC
    struct.pack_into("<I", data, window + 8, sd_image.SWAP_HEADER_VERSION)
    data[window + 4096:window + 8192] = b"\xa5" * 4096
    return data


class CheckImageTests(unittest.TestCase):
    def test_a_good_boot_passes(self):
        self.assertEqual(sd_image.check_image(bytes(_booted_image())), [])

    def test_changed_pattern_is_reported(self):
        data = _booted_image()
        data[sd_image.SWAP_START * 512 + 5 * 512 + 7] ^= 1
        problems = sd_image.check_image(bytes(data))
        self.assertEqual(len(problems), 1)
        self.assertIn("host pattern changed: swap-partition sectors 5..5", problems[0])

    def test_writes_outside_the_test_regions_are_reported(self):
        data = _booted_image()
        for sector in (100, 500, sd_image.SWAP_TEST_WINDOW[1]):
            data[(sd_image.SWAP_START + sector) * 512] = 1
        problems = sd_image.check_image(bytes(data))
        self.assertEqual(len(problems), 3, problems)
        self.assertIn("sectors 500..500", problems[1])

    def test_missing_swap_header_is_reported(self):
        data = _booted_image()
        data[(sd_image.SWAP_START + sd_image.SWAP_TEST_WINDOW[0]) * 512] = 0
        problems = sd_image.check_image(bytes(data))
        self.assertEqual(len(problems), 1)
        self.assertIn("did not swap on the SD card", problems[0])

    def test_swap_header_of_another_version_is_reported(self):
        data = _booted_image()
        struct.pack_into("<I", data, (sd_image.SWAP_START + sd_image.SWAP_TEST_WINDOW[0]) * 512 + 8, 1)
        problems = sd_image.check_image(bytes(data))
        self.assertEqual(len(problems), 1)
        self.assertIn("has version 1, expected 2", problems[0])


@unittest.skipUnless(all(_have(t) for t in ("sfdisk", "mkfs.fat", "mcopy", "mtype")),
                     "sfdisk, mkfs.fat or mtools missing")
class WriterTests(unittest.TestCase):
    def test_image_holds_mbr_fat_files_and_swap_pattern(self):
        with tempfile.TemporaryDirectory() as scratch:
            firmware = os.path.join(scratch, "firmware")
            os.makedirs(firmware)
            for name in make_sd_image.FIRMWARE_FILES:
                with open(os.path.join(firmware, name), "wb") as f:
                    f.write(name.encode() * 10)
            kernel = os.path.join(scratch, "kernel8.img")
            with open(kernel, "wb") as f:
                f.write(b"\x00" * 4 + b"ARM\x64" * 100)
            output = os.path.join(scratch, "sd.img")
            make_sd_image.write_image(output, kernel, firmware)

            self.assertEqual(os.path.getsize(output), sd_image.IMAGE_BYTES)
            with open(output, "rb") as f:
                mbr = f.read(512)
                f.seek(sd_image.SWAP_START * 512)
                swap = f.read(sd_image.PATTERN_SECTORS * 512)
            parts = sd_image.partitions(mbr)
            self.assertEqual(parts[0], (sd_image.BOOT_TYPE, sd_image.BOOT_START, sd_image.BOOT_SECTORS, True))
            self.assertEqual(parts[1], (sd_image.SWAP_TYPE, sd_image.SWAP_START, sd_image.SWAP_SECTORS, False))
            self.assertEqual(swap, sd_image.pattern())

            fat = f"{output}@@{sd_image.BOOT_START * 512}"
            mtype = shutil.which("mtype")
            for name in make_sd_image.FIRMWARE_FILES:
                content = subprocess.run([mtype, "-i", fat, f"::/{name}"], check=True, capture_output=True).stdout
                self.assertEqual(content, name.encode() * 10, name)
            config = subprocess.run([mtype, "-i", fat, "::/config.txt"], check=True, capture_output=True).stdout
            self.assertEqual(config.decode(), sd_image.CONFIG_TXT)
            copied = subprocess.run([mtype, "-i", fat, "::/kernel8.img"], check=True, capture_output=True).stdout
            with open(kernel, "rb") as f:
                self.assertEqual(copied, f.read())


if __name__ == "__main__":
    unittest.main()
