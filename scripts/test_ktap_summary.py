"""Tests of ktap_summary: totals over several logs and failure on any bad one."""

import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktap_summary  # noqa: E402

GOOD = """boot noise
KTAP version 1
1..1
    KTAP version 1
    # Subtest: boot
    1..2
    ok 1 a
    ok 2 b # SKIP not here
    # boot: pass:1 fail:0 skip:1 total:2
ok 1 boot
# Totals: pass:1 fail:0 skip:1 total:2
"""

FAILING = GOOD.replace("    ok 1 a", "    # a: EXPECTATION FAILED at X.swift:1\n    not ok 1 a") \
              .replace("ok 1 boot", "not ok 1 boot")

TRUNCATED = GOOD.split("    ok 2 b")[0]


class SummaryTests(unittest.TestCase):
    def run_summary(self, *texts):
        paths = []
        with tempfile.TemporaryDirectory() as directory:
            for index, text in enumerate(texts):
                path = os.path.join(directory, f"log{index}.log")
                with open(path, "w") as handle:
                    handle.write(text)
                paths.append(path)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = ktap_summary.summarize(paths)
        return code, out.getvalue().splitlines()

    def test_totals_add_up_over_logs(self):
        code, lines = self.run_summary(GOOD, GOOD)
        self.assertEqual(code, 0)
        self.assertEqual(lines[-1], "2 passed, 0 failed, 2 skipped")

    def test_a_failing_log_fails_the_summary(self):
        code, lines = self.run_summary(GOOD, FAILING)
        self.assertEqual(code, 1)
        self.assertEqual(lines[-1], "1 passed, 1 failed, 2 skipped")

    def test_a_truncated_log_counts_missing_tests_as_failed(self):
        code, lines = self.run_summary(TRUNCATED)
        self.assertEqual(code, 1)
        self.assertIn("FAIL", lines[0])
        self.assertTrue(lines[-1].startswith("1 passed, 1 failed"))


if __name__ == "__main__":
    unittest.main()
