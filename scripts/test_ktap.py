"""Tests of the KTAP parser, the QEMU runner, the bench report and ensure-deps.sh.

Run: python3 -m unittest discover -s scripts -p 'test_*.py'

The runner is exercised on fake "QEMU" commands (small Python programs that print a log,
exit with a status, sleep or crash), so no kernel is needed. Tests that need a tool this
machine lacks (swiftc, a C compiler, llvm-symbolizer, QEMU, kunit.py, setpriv) are skipped,
never passed vacuously.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_report  # noqa: E402
import ktap  # noqa: E402
import ktap_run  # noqa: E402

RUNNER = os.path.join(HERE, "ktap_run.py")
BENCH = os.path.join(HERE, "bench_report.py")
ENSURE = os.path.join(HERE, "ensure-deps.sh")
SWIFTC = "/opt/swift/usr/bin/swiftc" if os.access("/opt/swift/usr/bin/swiftc", os.X_OK) \
    else shutil.which("swiftc")

BOOT_NOISE = ("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n"
              "Booting from ROM..\r\n"
              "swift-vm-kernel on x86_64, booted by PVH\n"
              "  ram 0x000000100000-0x000007fe0000\n")

# Exactly what Kernel/Support/SelfTestHarness.swift prints for two suites.
GOOD = textwrap.dedent("""\
    KTAP version 1
    1..2
        KTAP version 1
        # Subtest: boot
        1..3
        ok 1 memory_map_sane
        ok 2 bss_zeroed
        ok 3 traps_return
        # boot: pass:3 fail:0 skip:0 total:3
    ok 1 boot
        KTAP version 1
        # Subtest: page_alloc
        1..2
        ok 1 allocate_all_and_free
        ok 2 double_free_detected
        # page_alloc: pass:2 fail:0 skip:0 total:2
    ok 2 page_alloc
    # Totals: pass:5 fail:0 skip:0 total:5
    """)

FAILING = textwrap.dedent("""\
    KTAP version 1
    1..2
        KTAP version 1
        # Subtest: page_alloc
        1..3
        ok 1 allocate_all_and_free
        # counters_balance: EXPECTATION FAILED at Kernel/SelfTest/PageAllocTests.swift:41
        # Expected free pages == 0x7e00, but got 0x7dff
        not ok 2 counters_balance
        ok 3 contiguous_runs # SKIP needs 2 MiB of RAM
        # page_alloc: pass:1 fail:1 skip:1 total:3
    not ok 1 page_alloc
        KTAP version 1
        # Subtest: heap
        1..1
        ok 1 arc_lifetimes
        # heap: pass:1 fail:0 skip:0 total:1
    ok 2 heap
    # Totals: pass:2 fail:1 skip:1 total:4
    """)

SKIPPED_SUITE = textwrap.dedent("""\
    KTAP version 1
    1..1
        KTAP version 1
        # Subtest: virtio_blk
        1..2
        ok 1 read_sector # SKIP no virtio-blk device
        ok 2 write_sector # SKIP no virtio-blk device
        # virtio_blk: pass:0 fail:0 skip:2 total:2
    ok 1 virtio_blk # SKIP all tests skipped
    # Totals: pass:0 fail:0 skip:2 total:2
    """)

MISSING_ENTRY = textwrap.dedent("""\
    KTAP version 1
    1..1
        KTAP version 1
        # Subtest: heap
        1..3
        ok 1 arc_lifetimes
        ok 2 alignment
    ok 1 heap
    """)

PANIC_MID_TEST = textwrap.dedent("""\
    KTAP version 1
    1..2
        KTAP version 1
        # Subtest: boot
        1..4
        ok 1 memory_map_sane
        ok 2 bss_zeroed

    KERNEL PANIC: page fault
      in self-test boot.direct_map_reads
      vector 0x000000000000000e
      cr2 0x0000000000000000
      rip 0xffffffff80012345
      pc 0xffffffff80012345
      bt #0 0xffffffff80011000
      bt #1 0xffffffff80010000
    KERNEL PANIC: end
    """)


def sample(name: str) -> str:
    return {"good": GOOD, "failing": FAILING}[name]


def leaf_statuses(result: ktap.KtapResult) -> dict:
    return {".".join(path): test.status for path, test in result.leaves()}


class ParserTests(unittest.TestCase):
    def test_good_log_gives_suites_tests_and_counts(self):
        result = ktap.parse(BOOT_NOISE + GOOD)
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(result.version, "KTAP version 1")
        self.assertEqual(result.plan, 2)
        self.assertEqual([s.name for s in result.suites], ["boot", "page_alloc"])
        self.assertEqual([t.name for t in result.suites[0].tests],
                         ["memory_map_sane", "bss_zeroed", "traps_return"])
        self.assertEqual(result.suites[0].plan, 3)
        self.assertEqual(result.counts().summary_line(), "5 passed, 0 failed, 0 skipped")
        self.assertEqual(result.totals, {"pass": 5, "fail": 0, "skip": 0, "total": 5})
        self.assertEqual(result.suites[0].diagnostics, ["boot: pass:3 fail:0 skip:0 total:3"])

    def test_failing_test_keeps_its_diagnostics(self):
        result = ktap.parse(FAILING)
        self.assertFalse(result.ok)
        self.assertTrue(result.complete)
        self.assertEqual(leaf_statuses(result), {
            "page_alloc.allocate_all_and_free": "pass",
            "page_alloc.counters_balance": "fail",
            "page_alloc.contiguous_runs": "skip",
            "heap.arc_lifetimes": "pass"})
        failed = result.suites[0].tests[1]
        self.assertEqual(failed.diagnostics, [
            "counters_balance: EXPECTATION FAILED at Kernel/SelfTest/PageAllocTests.swift:41",
            "Expected free pages == 0x7e00, but got 0x7dff"])
        self.assertEqual(failed.line, 9)
        self.assertEqual(result.suites[0].status, "fail")
        self.assertEqual([p.kind for p in result.problems], [ktap.NOT_OK])
        self.assertIn("page_alloc.counters_balance", result.problems[0].message)
        self.assertEqual(result.counts().summary_line(), "2 passed, 1 failed, 1 skipped")

    def test_skip_records_reason_and_whole_suite_skip_is_not_a_failure(self):
        result = ktap.parse(FAILING)
        skipped = result.suites[0].tests[2]
        self.assertEqual((skipped.status, skipped.directive, skipped.reason),
                         ("skip", "SKIP", "needs 2 MiB of RAM"))
        result = ktap.parse(SKIPPED_SUITE)
        self.assertTrue(result.ok, result.problems)
        self.assertEqual(result.suites[0].status, "skip")
        self.assertEqual(result.counts().summary_line(), "0 passed, 0 failed, 2 skipped")

    def test_missing_plan_entry_is_reported(self):
        result = ktap.parse(MISSING_ENTRY)
        self.assertFalse(result.ok)
        self.assertEqual([p.kind for p in result.problems], [ktap.MISSING])
        self.assertIn("heap: no result for plan entry 3 of 1..3", result.problems[0].message)
        self.assertEqual([t.status for t in result.suites[0].tests], ["pass", "pass", "missing"])
        self.assertEqual(result.counts().missing, 1)

    def test_missing_suites_after_document_cut_short(self):
        result = ktap.parse(GOOD.split("    KTAP version 1\n    # Subtest: page_alloc")[0])
        self.assertFalse(result.complete)
        kinds = {p.kind for p in result.problems}
        self.assertEqual(kinds, {ktap.MISSING, ktap.TRUNCATED})
        self.assertEqual([s.status for s in result.suites], ["pass", "missing"])

    def test_panic_mid_test_names_the_running_test_and_keeps_the_backtrace(self):
        result = ktap.parse(BOOT_NOISE + PANIC_MID_TEST)
        self.assertFalse(result.ok)
        self.assertEqual(len(result.panics), 1)
        panic = result.panics[0]
        self.assertEqual(panic.message, "KERNEL PANIC: page fault")
        self.assertEqual((panic.suite, panic.test), ("boot", "direct_map_reads"))
        self.assertEqual([(e.label, hex(e.address)) for e in panic.backtrace], [
            ("pc", "0xffffffff80012345"), ("bt #0", "0xffffffff80011000"),
            ("bt #1", "0xffffffff80010000")])
        self.assertEqual(leaf_statuses(result), {
            "boot.memory_map_sane": "pass", "boot.bss_zeroed": "pass",
            "boot.direct_map_reads": "crash", "boot.#4": "missing", "#2": "missing"})
        self.assertEqual(result.problems[0].kind, ktap.PANIC)
        self.assertIn("boot.direct_map_reads", result.problems[0].message)
        self.assertTrue(result.has(ktap.MISSING) and result.has(ktap.TRUNCATED))
        # The crashed test counts as failed; the never-started ones as missing.
        counts = result.counts()
        self.assertEqual((counts.passed, counts.failed, counts.crashed, counts.missing),
                         (2, 1, 1, 2))

    def test_panic_without_kernel_context_is_placed_by_ktap_position(self):
        text = GOOD.split("    ok 2 bss_zeroed")[0] + "PANIC: out of memory\n  pc 0x1234\n"
        result = ktap.parse(text)
        self.assertEqual((result.panics[0].suite, result.panics[0].test), ("boot", "#2"))
        self.assertIn("while running boot.#2", result.problems[0].message)

    def test_panic_before_ktap_and_after_it(self):
        result = ktap.parse("boot\nKERNEL PANIC: no memory map\n  bt #0 0xffff0000\n")
        self.assertEqual([p.kind for p in result.problems], [ktap.NO_KTAP, ktap.PANIC])
        self.assertEqual(result.panics[0].backtrace[0].address, 0xffff0000)
        result = ktap.parse(GOOD + "KERNEL PANIC: exit returned\n")
        self.assertTrue(result.complete)
        self.assertEqual([p.kind for p in result.problems], [ktap.PANIC])

    def test_noise_before_and_inside_the_document_is_tolerated(self):
        noisy = GOOD.replace("    ok 2 bss_zeroed\n",
                             "page_alloc: 32256 pages free\n"
                             "        indented chatter 1..9\n"
                             "    ok 2 bss_zeroed\n"
                             "  ok 1 at an indentation no block has\n"
                             "   # nor is this a diagnostic\n")
        result = ktap.parse(BOOT_NOISE + "more boot\r\n\x00\x07\n" + noisy)
        self.assertTrue(result.ok, result.problems)
        bss, traps = result.suites[0].tests[1:3]
        self.assertEqual(bss.log, ["page_alloc: 32256 pages free",
                                   "        indented chatter 1..9"])
        self.assertEqual(traps.log, ["  ok 1 at an indentation no block has",
                                     "   # nor is this a diagnostic"])
        self.assertEqual(traps.diagnostics, [])

    def test_junk_on_the_version_line_is_a_prefix(self):
        text = "\x1b[0mBooting from ROM..KTAP version 1\n" + GOOD.split("\n", 1)[1]
        result = ktap.parse(text)
        self.assertTrue(result.ok, result.problems)

    def test_no_output_and_no_ktap(self):
        for text in ("", "\n\n", b""):
            result = ktap.parse(text)
            self.assertFalse(result.found)
            self.assertEqual([(p.kind, p.message) for p in result.problems],
                             [(ktap.NO_KTAP, "no output at all")])
        result = ktap.parse(BOOT_NOISE)
        self.assertEqual([(p.kind, p.message) for p in result.problems],
                         [(ktap.NO_KTAP, "no 'KTAP version' line in the output")])
        self.assertFalse(result.ok)

    def test_out_of_order_duplicate_and_extra_results(self):
        def with_results(*lines):
            body = "".join(f"    {line}\n" for line in lines)
            return ("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..3\n"
                    + body + "ok 1 s\n")
        result = ktap.parse(with_results("ok 1 a", "ok 3 c", "ok 2 b"))
        self.assertEqual([p.kind for p in result.problems], [ktap.OUT_OF_ORDER] * 2)
        self.assertEqual([t.number for t in result.suites[0].tests], [1, 3, 2])
        result = ktap.parse(with_results("ok 1 a", "ok 2 b", "ok 2 b", "ok 3 c"))
        self.assertEqual([p.kind for p in result.problems], [ktap.DUPLICATE])
        result = ktap.parse(with_results("ok 1 a", "ok 2 b", "ok 3 c", "ok 4 d"))
        self.assertEqual([p.kind for p in result.problems], [ktap.EXTRA])

    def test_output_cut_mid_line_is_truncated_not_a_result(self):
        text = MISSING_ENTRY.split("    ok 2 alignment")[0] + "    ok 2 alig"
        result = ktap.parse(text)
        self.assertFalse(result.complete)
        self.assertEqual(leaf_statuses(result), {"heap.arc_lifetimes": "pass",
                                                 "heap.#2": "crash", "heap.#3": "missing"})
        self.assertEqual(result.suites[0].tests[1].log, ["    ok 2 alig"])
        self.assertTrue(result.has(ktap.TRUNCATED))

    def test_second_document_means_the_machine_restarted(self):
        cut = GOOD.split("    ok 3 traps_return")[0]
        result = ktap.parse(cut + "SeaBIOS again\n" + GOOD)
        self.assertTrue(result.has(ktap.RESTARTED))
        self.assertTrue(result.has(ktap.TRUNCATED))
        self.assertEqual(leaf_statuses(result)["boot.#3"], "crash")
        result = ktap.parse(GOOD + GOOD)
        self.assertEqual([p.kind for p in result.problems], [ktap.RESTARTED])

    def test_counts_lines_must_match_results(self):
        result = ktap.parse(GOOD.replace("# Totals: pass:5", "# Totals: pass:6"))
        self.assertEqual([p.kind for p in result.problems], [ktap.TOTALS_MISMATCH])
        result = ktap.parse(GOOD.replace("# boot: pass:3 fail:0", "# boot: pass:2 fail:1"))
        self.assertEqual([p.kind for p in result.problems], [ktap.TOTALS_MISMATCH])
        self.assertIn("# boot: pass:2", result.problems[0].message)

    def test_suite_result_must_agree_with_its_tests(self):
        result = ktap.parse(FAILING.replace("not ok 1 page_alloc", "ok 1 page_alloc"))
        self.assertEqual(sorted(p.kind for p in result.problems),
                         sorted([ktap.NOT_OK, ktap.INCONSISTENT]))
        self.assertEqual(result.suites[0].status, "fail")
        result = ktap.parse(GOOD.replace("ok 2 page_alloc", "not ok 2 page_alloc"))
        self.assertEqual([p.kind for p in result.problems], [ktap.NOT_OK])
        self.assertIn("'page_alloc' not ok", result.problems[0].message)
        result = ktap.parse(GOOD.replace("ok 2 page_alloc", "ok 2 pagealloc"))
        self.assertEqual([p.kind for p in result.problems], [ktap.NAME_MISMATCH])

    def test_crlf_tabs_and_tap_dash_are_accepted(self):
        old = ("TAP version 14\r\n1..1\r\n\t# Subtest: s\r\n\t1..2\r\n\tok 1 - a\r\n"
               "\tnot ok 2 - b\r\nnot ok 1 - s\r\n")
        result = ktap.parse(old)
        self.assertEqual(leaf_statuses(result), {"s.a": "pass", "s.b": "fail"})
        self.assertEqual([p.kind for p in result.problems], [ktap.NOT_OK])

    def test_directives(self):
        cases = {
            "ok 1 t": ("pass", None, ""),
            "not ok 1 t": ("fail", None, ""),
            "ok 1 t # SKIP no device": ("skip", "SKIP", "no device"),
            "not ok 1 t # SKIP no device": ("skip", "SKIP", "no device"),
            "ok 1 t # skip": ("skip", "SKIP", ""),
            "not ok 1 t # TIMEOUT 30 seconds": ("fail", "TIMEOUT", "30 seconds"),
            "not ok 1 t # ERROR bad setup": ("fail", "ERROR", "bad setup"),
            "ok 1 t # TIMEOUT": ("fail", "TIMEOUT", ""),
            "not ok 1 t # XFAIL known": ("skip", "XFAIL", "known"),
            "ok 1 check return code # rcode=0": ("pass", None, "rcode=0"),
        }
        for line, expected in cases.items():
            with self.subTest(line=line):
                result = ktap.parse(f"KTAP version 1\n1..1\n{line}\n")
                test = result.suites[0]
                self.assertEqual((test.status, test.directive, test.reason), expected)
        self.assertEqual(ktap.parse("KTAP version 1\n1..1\nok 1 check return code # rcode=0\n")
                         .suites[0].name, "check return code")

    def test_deeper_nesting_from_the_ktap_spec(self):
        spec = textwrap.dedent("""\
            KTAP version 1
            1..1
              KTAP version 1
              1..3
                KTAP version 1
                1..1
                # test_1: initializing test_1
                ok 1 test_1
              ok 1 example_test_1
                KTAP version 1
                1..2
                ok 1 test_1 # SKIP test_1 skipped
                ok 2 test_2
              ok 2 example_test_2
                KTAP version 1
                1..3
                ok 1 test_1
                # test_2: FAIL
                not ok 2 test_2
                ok 3 test_3 # SKIP test_3 skipped
              not ok 3 example_test_3
            not ok 1 main_test
            """)
        result = ktap.parse(spec)
        self.assertTrue(result.complete)
        self.assertEqual(leaf_statuses(result), {
            "main_test.example_test_1.test_1": "pass",
            "main_test.example_test_2.test_1": "skip",
            "main_test.example_test_2.test_2": "pass",
            "main_test.example_test_3.test_1": "pass",
            "main_test.example_test_3.test_2": "fail",
            "main_test.example_test_3.test_3": "skip"})
        leaf = result.suites[0].tests[2].tests[1]
        self.assertEqual(leaf.diagnostics, ["test_2: FAIL"])
        self.assertEqual(result.suites[0].tests[0].tests[0].diagnostics,
                         ["test_1: initializing test_1"])
        self.assertEqual([p.kind for p in result.problems], [ktap.NOT_OK])
        self.assertEqual(ktap.check_format(spec, indent_step=2), [])

    def test_missing_plan_line(self):
        result = ktap.parse("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n"
                            "    ok 1 a\nok 1 s\n")
        self.assertEqual([p.kind for p in result.problems], [ktap.NO_PLAN])
        result = ktap.parse("KTAP version 1\nok 1 a\n")
        self.assertEqual([p.kind for p in result.problems], [ktap.NO_PLAN])

    def test_parse_never_raises_on_garbage(self):
        import random
        rng = random.Random(1234)
        pieces = ["KTAP version 1", "1..3", "    KTAP version 1", "    1..2", "ok 1 a",
                  "not ok 2 b", "    ok 1 x", "    not ok 3 y # SKIP", "# d", "    # d",
                  "KERNEL PANIC: x", "  bt #0 0x10", "noise", "", "        ok 1 z",
                  "    # Subtest: q", "ok 9", "\x1b[2J", "1..0", "ok 1 # SKIP"]
        for _ in range(300):
            text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
            if rng.random() < 0.5:
                text += "\n"
            result = ktap.parse(text)
            self.assertIsInstance(result.problems, list)
            result.counts()
            if result.ok:
                self.assertTrue(result.found and result.complete)


class KtapCliTests(unittest.TestCase):
    def test_cli_judges_a_saved_log(self):
        with tempfile.TemporaryDirectory() as tmp:
            for text, code, last in ((BOOT_NOISE + GOOD, 0, "5 passed, 0 failed, 0 skipped"),
                                     (FAILING, 1, "2 passed, 1 failed, 1 skipped")):
                path = os.path.join(tmp, "x.log")
                with open(path, "w") as handle:
                    handle.write(text)
                done = subprocess.run([sys.executable, os.path.join(HERE, "ktap.py"), "--check",
                                       path], capture_output=True, text=True, timeout=30)
                self.assertEqual(done.returncode, code, done.stdout)
                self.assertEqual(done.stdout.splitlines()[-1], last)
            self.assertIn("# Expected free pages == 0x7e00", done.stdout)


# The KTAP v1 spec rules, checked on what the real harness prints.
class FormatTests(unittest.TestCase):
    def test_samples_follow_the_spec(self):
        for text in (GOOD, FAILING, SKIPPED_SUITE):
            self.assertEqual(ktap.check_format(text), [])
        self.assertEqual(ktap.check_format(BOOT_NOISE + GOOD), [])

    def test_each_rule_catches_its_violation(self):
        cases = {
            "rule 1": "1..1\nok 1 a\n",
            "rule 2: result line before the plan": "KTAP version 1\nok 1 a\n",
            "rule 3": GOOD.replace("    KTAP version 1\n    # Subtest: boot",
                                   "  KTAP version 1\n    # Subtest: boot"),
            "rule 4: result number 3, expected 2": GOOD.replace("ok 2 bss_zeroed",
                                                                "ok 3 bss_zeroed"),
            "planned 3 tests but reported 2": GOOD.replace("    ok 3 traps_return\n", ""),
            "description contains '#'": GOOD.replace("ok 2 bss_zeroed", "ok 2 bss#zeroed"),
            "unknown directive 'SKIPPED'": GOOD.replace("ok 2 bss_zeroed",
                                                        "ok 2 bss_zeroed # SKIPPED x"),
            "TIMEOUT on an ok line": GOOD.replace("ok 2 bss_zeroed",
                                                  "ok 2 bss_zeroed # TIMEOUT 5s"),
            "rule 5: result 'bootx' closes subtest 'boot'": GOOD.replace("ok 1 boot",
                                                                         "ok 1 bootx"),
            "rule 5: 'page_alloc' is ok but a subtest failed":
                FAILING.replace("not ok 1 page_alloc", "ok 1 page_alloc"),
            "rule 7: unknown line": GOOD.replace("    ok 2 bss", "chatter\n    ok 2 bss"),
            "rule 4: the document ended": GOOD.split("ok 2 page_alloc")[0],
            "result without a description": GOOD.replace("ok 2 bss_zeroed", "ok 2"),
            "trailing whitespace": GOOD.replace("ok 2 bss_zeroed", "ok 2 bss_zeroed "),
            "tab character": GOOD.replace("    ok 2 bss_zeroed", "\tok 2 bss_zeroed"),
        }
        for expected, text in cases.items():
            with self.subTest(expected=expected):
                errors = ktap.check_format(text)
                self.assertTrue(any(expected in e for e in errors), errors)
        self.assertEqual(ktap.check_format(
            GOOD.replace("    ok 2 bss", "chatter\n    ok 2 bss"), allow_unknown=True), [])


def _compile_swift(sources, main_text, workdir):
    main = os.path.join(workdir, "main.swift")
    with open(main, "w") as handle:
        handle.write(main_text)
    binary = os.path.join(workdir, "harness")
    subprocess.run([SWIFTC, "-Onone", *sources, main, "-o", binary], check=True,
                   capture_output=True, timeout=600)
    return subprocess.run([binary], check=True, capture_output=True, text=True,
                          timeout=60).stdout


HARNESS_MAIN = textwrap.dedent("""\
    let runner = KTAPRunner(emit: { print($0) })
    _ = runner.run([
      SelfTestSuite("alpha", [
        SelfTest("passes") { t in t.expect(true, "true") },
        SelfTest("fails_equal") { t in t.expectEqual(3, 4, "three") },
        SelfTest("skips") { t in t.skip("not on this machine") },
        SelfTest("notes_and_passes") { t in
          t.note("just a note"); t.expectEqual(UInt64(0x10000), 0x10000, "big") },
      ]),
      SelfTestSuite("beta", [
        SelfTest("fails_twice") { t in
          t.expect(false, "flag set"); t.expectNotEqual(5, 5, "five") },
      ]),
      SelfTestSuite("gamma", [SelfTest("only_skip") { t in t.skip("nothing") }]),
    ])
    var fakeCycles: UInt64 = 1000
    let bench = BenchmarkRunner(readCycles: { fakeCycles += 12345; return fakeCycles },
                                emit: { print($0) })
    bench.run([
      BenchmarkSuite("page_alloc") { b in
        b.measure("baseline", operations: 100) {}
        b.measure("alloc_free", operations: 3) {}
        b.report("exact", operations: 4, cycles: 10)
        b.value("bytes_per_page", 4096, unit: "bytes")
      },
    ])
    """)


@unittest.skipUnless(SWIFTC, "swiftc not available")
class RealHarnessTests(unittest.TestCase):
    """Compiles Kernel/Support/SelfTestHarness.swift and Benchmark.swift for the host and holds
    their actual output to the KTAP spec, the parser and the bench report."""

    output = ""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ktap-harness-")
        sources = [os.path.join(REPO, "Kernel", "Support", name)
                   for name in ("SelfTestHarness.swift", "Benchmark.swift")]
        cls.output = _compile_swift(sources, HARNESS_MAIN, cls.tmp)
        cls.ktap_text = cls.output.split("BENCH begin")[0]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_harness_output_follows_the_ktap_spec(self):
        self.assertEqual(ktap.check_format(self.ktap_text), [])

    def test_harness_output_parses_to_what_the_tests_did(self):
        result = ktap.parse(self.ktap_text)
        self.assertTrue(result.complete)
        self.assertEqual(leaf_statuses(result), {
            "alpha.passes": "pass", "alpha.fails_equal": "fail", "alpha.skips": "skip",
            "alpha.notes_and_passes": "pass", "beta.fails_twice": "fail",
            "gamma.only_skip": "skip"})
        self.assertEqual([s.status for s in result.suites], ["fail", "fail", "skip"])
        self.assertEqual({p.kind for p in result.problems}, {ktap.NOT_OK})
        fails_equal = result.suites[0].tests[1]
        self.assertRegex(fails_equal.diagnostics[0],
                         r"^fails_equal: EXPECTATION FAILED at .*main\.swift:\d+$")
        self.assertEqual(fails_equal.diagnostics[1], "Expected three == 4, but got 3")
        self.assertEqual(len(result.suites[1].tests[0].diagnostics), 4)
        self.assertEqual(result.suites[0].tests[2].reason, "not on this machine")
        self.assertEqual(result.suites[0].tests[3].diagnostics, ["just a note"])
        self.assertEqual(result.totals, {"pass": 2, "fail": 2, "skip": 2, "total": 6})

    def test_benchmark_output_is_read_by_the_report(self):
        run = bench_report.parse_bench(self.output.splitlines(), arch="host")
        self.assertEqual(run.problems, [])
        self.assertEqual(run.declared_suites, 1)
        self.assertEqual([e.name for e in run.entries], [
            "page_alloc.baseline", "page_alloc.alloc_free", "page_alloc.exact",
            "page_alloc.bytes_per_page"])
        base, alloc, exact, value = run.entries
        self.assertEqual((base.ops, base.cycles, base.per_op), (100, 12345, 123.45))
        self.assertEqual((alloc.ops, alloc.cycles, alloc.per_op), (3, 12345, 4115.0))
        self.assertEqual((exact.cycles, exact.per_op), (10, 2.5))
        self.assertEqual((value.value, value.unit), (4096, "bytes"))
        self.assertAlmostEqual(run.ratio(alloc, run.baseline()), 100 / 3)


@unittest.skipUnless(os.environ.get("KUNIT_PY") or shutil.which("kunit.py"),
                     "kunit.py not available (set KUNIT_PY=/path/to/linux/tools/testing/kunit/"
                     "kunit.py); FormatTests check the KTAP spec rules instead")
class KunitPyTests(unittest.TestCase):
    def test_kunit_py_parse_accepts_the_samples(self):
        kunit = os.environ.get("KUNIT_PY") or shutil.which("kunit.py")
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("good", "failing"):
                path = os.path.join(tmp, name + ".log")
                with open(path, "w") as handle:
                    handle.write(BOOT_NOISE + sample(name))
                done = subprocess.run([sys.executable, kunit, "parse", path],
                                      capture_output=True, text=True, timeout=120)
                self.assertNotIn("[ERROR]", done.stdout)
                self.assertEqual(done.returncode, 0 if name == "good" else 1, done.stdout)


# -- the runner ------------------------------------------------------------------------------

class RunnerTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ktap-run-")
        self.log = os.path.join(self.tmp, "deep", "dir", "x86_64.log")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fake_qemu(self, body: str) -> list:
        """A fake QEMU: a Python program in the temp dir."""
        path = os.path.join(self.tmp, "fake_qemu.py")
        with open(path, "w") as handle:
            handle.write("import os, sys, time, signal, subprocess\n" + textwrap.dedent(body))
        return [sys.executable, path]

    def printing(self, text: str, status: int = 33, after: str = "") -> list:
        return self.fake_qemu(f"""\
            sys.stdout.write({text!r})
            sys.stdout.flush()
            {after}
            sys.exit({status})
            """)

    def run_runner(self, command, *options, timeout=30, stdin=subprocess.DEVNULL,
                   input_text=None):
        args = [sys.executable, RUNNER, "--target", "x86_64", "--log", self.log,
                "--success-exit", "33", *options, "--", *command]
        start = time.monotonic()
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=None if input_text is not None else stdin,
                              input=input_text)
        self.elapsed = time.monotonic() - start
        return done

    def last_line(self, done) -> str:
        return [line for line in done.stdout.splitlines() if line.strip()][-1]

    def test_good_run_passes_and_logs_raw_output(self):
        text = BOOT_NOISE + GOOD
        done = self.run_runner(self.printing(text))
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertEqual(self.last_line(done), "5 passed, 0 failed, 0 skipped")
        self.assertIn("PASS: x86_64", done.stdout)
        # Echoed live, before the summary (text mode turns the CRLFs into LFs).
        self.assertTrue(done.stdout.startswith(text.replace("\r\n", "\n")))
        self.assertRegex(done.stdout, r"boot\s+3\s+0\s+0\s+0\s+ok")
        self.assertRegex(done.stdout, r"page_alloc\s+2\s+0\s+0\s+0\s+ok")
        with open(self.log, "rb") as handle:
            self.assertEqual(handle.read(), text.encode())

    def test_failing_test_exits_1_and_prints_its_diagnostics(self):
        done = self.run_runner(self.printing(FAILING, status=35))
        self.assertEqual(done.returncode, ktap_run.EXIT_TESTS)
        self.assertEqual(self.last_line(done), "2 passed, 1 failed, 1 skipped")
        self.assertIn("failed: page_alloc.counters_balance", done.stdout)
        self.assertIn("# Expected free pages == 0x7e00, but got 0x7dff", done.stdout)
        self.assertIn("'page_alloc.counters_balance' not ok", done.stdout)
        self.assertIn("exit status 35 (isa-debug-exit wrote 0x11) is not an accepted one (33)",
                      done.stdout)

    def test_missing_plan_entry_exits_1(self):
        done = self.run_runner(self.printing(MISSING_ENTRY))
        self.assertEqual(done.returncode, ktap_run.EXIT_TESTS)
        self.assertIn("missing: ", done.stdout)
        self.assertIn("no result for plan entry 3 of 1..3", done.stdout)
        self.assertEqual(self.last_line(done), "2 passed, 0 failed, 0 skipped")

    def test_panic_exits_1_and_says_backtrace_is_not_symbolized_without_elf(self):
        done = self.run_runner(self.printing(PANIC_MID_TEST, status=35))
        self.assertEqual(done.returncode, ktap_run.EXIT_TESTS)
        self.assertIn("panic at log line 9: KERNEL PANIC: page fault", done.stdout)
        self.assertIn("while running self-test boot.direct_map_reads", done.stdout)
        self.assertIn("no --elf given: backtrace not symbolized", done.stdout)
        self.assertIn("bt #1  0xffffffff80010000", done.stdout)
        self.assertIn("crashed: boot.direct_map_reads", done.stdout)
        self.assertEqual(self.last_line(done), "2 passed, 1 failed, 0 skipped")

    def test_panic_with_missing_elf_or_symbolizer_says_so(self):
        done = self.run_runner(self.printing(PANIC_MID_TEST, status=35), "--elf",
                               os.path.join(self.tmp, "nope.elf"))
        self.assertIn("nope.elf does not exist: backtrace not symbolized", done.stdout)
        elf = os.path.join(self.tmp, "k.elf")
        open(elf, "w").close()
        done = self.run_runner(self.printing(PANIC_MID_TEST, status=35), "--elf", elf,
                               "--symbolizer", os.path.join(self.tmp, "no-symbolizer"))
        self.assertIn("llvm-symbolizer not found", done.stdout)

    def test_no_output_exits_5(self):
        done = self.run_runner(self.printing("", status=33))
        self.assertEqual(done.returncode, ktap_run.EXIT_NO_OUTPUT)
        self.assertIn("no output on the serial port", done.stdout)
        self.assertEqual(self.last_line(done), "0 passed, 0 failed, 0 skipped")

    def test_no_ktap_exits_5(self):
        done = self.run_runner(self.printing(BOOT_NOISE, status=33))
        self.assertEqual(done.returncode, ktap_run.EXIT_NO_OUTPUT)
        self.assertIn("no KTAP in the output", done.stdout)

    def test_timeout_kills_the_whole_process_group_and_exits_4(self):
        pidfile = os.path.join(self.tmp, "child.pid")
        cut = GOOD.split("    ok 3 traps_return")[0]
        command = self.fake_qemu(f"""\
            child = subprocess.Popen(["sleep", "300"])
            open({pidfile!r}, "w").write(str(child.pid))
            sys.stdout.write({cut!r})
            sys.stdout.flush()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a QEMU that ignores SIGTERM
            time.sleep(300)
            """)
        done = self.run_runner(command, "--timeout", "2")
        self.assertEqual(done.returncode, ktap_run.EXIT_TIMEOUT, done.stdout)
        self.assertLess(self.elapsed, 20)
        self.assertIn("timeout: no verdict after 2 s; QEMU killed", done.stdout)
        self.assertIn("boot: no result for entry 3 of the plan", done.stdout)
        self.assertEqual(self.last_line(done), "2 passed, 1 failed, 0 skipped")
        with open(pidfile) as handle:
            child = int(handle.read())
        time.sleep(0.2)
        self.assertFalse(_alive(child), "QEMU's child survived the timeout")
        with open(self.log) as handle:
            self.assertEqual(handle.read(), cut)

    def test_exit_without_closing_output_does_not_wait_for_the_timeout(self):
        # QEMU exits but something it started still holds the serial pipe open.
        command = self.fake_qemu(f"""\
            subprocess.Popen(["sleep", "300"])
            sys.stdout.write({GOOD!r})
            sys.stdout.flush()
            sys.exit(33)
            """)
        done = self.run_runner(command, "--timeout", "60")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertLess(self.elapsed, 15)

    def test_exit_status_mapping(self):
        cases = [
            ((), 33, 0),
            ((), 35, ktap_run.EXIT_QEMU),
            ((), 0, ktap_run.EXIT_QEMU),
            (("--success-exit", "0"), 0, 0),
            (("--success-exit", "0"), 1, ktap_run.EXIT_QEMU),
        ]
        for options, status, expected in cases:
            with self.subTest(options=options, status=status):
                done = self.run_runner(self.printing(GOOD, status=status), *options)
                self.assertEqual(done.returncode, expected, done.stdout)
        # A QEMU killed by a signal is not an exit status anyone accepts.
        done = self.run_runner(self.printing(GOOD, after="os.kill(os.getpid(), signal.SIGSEGV)"))
        self.assertEqual(done.returncode, ktap_run.EXIT_QEMU)
        self.assertIn("killed by signal SIGSEGV", done.stdout)

    def test_qemu_errors_exit_3(self):
        done = self.run_runner([os.path.join(self.tmp, "qemu-system-none")])
        self.assertEqual(done.returncode, ktap_run.EXIT_QEMU)
        self.assertIn("QEMU error: cannot start", done.stdout)
        with open(self.log) as handle:
            self.assertIn("cannot start", handle.read())
        command = self.fake_qemu("""\
            sys.stderr.write("qemu-system-x86_64: -kernel k.elf: No such file or directory\\n")
            sys.exit(1)
            """)
        done = self.run_runner(command)
        self.assertEqual(done.returncode, ktap_run.EXIT_QEMU)
        self.assertIn("QEMU failed before any serial output (exit status 1)", done.stdout)
        self.assertIn("QEMU error: qemu-system-x86_64: -kernel k.elf: No such file", done.stdout)
        # An error on stderr fails even a good run; a warning does not.
        for line, expected in (("qemu-system-x86_64: warning: TCG doesn't support x", 0),
                               ("qemu-system-x86_64: failed to write to debug exit", 3)):
            command = self.fake_qemu(f"""\
                sys.stderr.write({line + chr(10)!r}); sys.stderr.flush()
                sys.stdout.write({GOOD!r})
                sys.exit(33)
                """)
            with self.subTest(line=line):
                self.assertEqual(self.run_runner(command).returncode, expected)

    @unittest.skipUnless(shutil.which("qemu-system-x86_64"), "QEMU not installed")
    def test_real_qemu_bad_option_exits_3(self):
        done = self.run_runner(["qemu-system-x86_64", "-M", "q35", "-nographic",
                                "-no-such-option"])
        self.assertEqual(done.returncode, ktap_run.EXIT_QEMU)
        self.assertIn("-no-such-option", done.stdout)

    def test_stderr_lands_in_the_log_between_serial_lines(self):
        command = self.fake_qemu(f"""\
            sys.stdout.write("KTAP version 1\\n1..1\\nok 1 a")
            sys.stdout.flush(); time.sleep(0.3)
            sys.stderr.write("qemu-system-x86_64: warning: something\\n"); sys.stderr.flush()
            time.sleep(0.3)
            sys.stdout.write(" b\\n")
            sys.exit(33)
            """)
        done = self.run_runner(command)
        self.assertEqual(done.returncode, 0, done.stdout)
        with open(self.log) as handle:
            self.assertEqual(handle.read(), "KTAP version 1\n1..1\nok 1 a b\n"
                                            "qemu-system-x86_64: warning: something\n")

    def test_stdin_is_closed_in_test_mode_and_passed_in_run_mode(self):
        command = self.fake_qemu(f"""\
            data = sys.stdin.read() if sys.stdin is not None else ""
            sys.stdout.write("read " + repr(data) + "\\n")
            sys.stdout.write({GOOD!r})
            sys.exit(33)
            """)
        done = self.run_runner(command, input_text="typed at the kernel\n")
        self.assertIn("read ''", done.stdout)
        done = self.run_runner(command, "--mode", "run", input_text="typed at the kernel\n")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertIn("read 'typed at the kernel\\n'", done.stdout)
        self.assertEqual(self.last_line(done), "5 passed, 0 failed, 0 skipped")

    def test_run_mode_needs_no_ktap_but_still_judges_status_and_panics(self):
        done = self.run_runner(self.printing("hello from the kernel\n"), "--mode", "run")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertEqual(self.last_line(done), "0 passed, 0 failed, 0 skipped")
        done = self.run_runner(self.printing("KERNEL PANIC: x\n", status=35), "--mode", "run")
        self.assertEqual(done.returncode, ktap_run.EXIT_TESTS)

    def test_bench_mode(self):
        bench = ("boot\nBENCH begin suites=1\n"
                 "BENCH name=page_alloc.baseline ops=100 cycles=1000 per_op=10.00\n"
                 "BENCH name=page_alloc.alloc_free ops=100 cycles=3000 per_op=30.00\n"
                 "BENCH name=heap.bytes value=4096 unit=bytes\n")
        done = self.run_runner(self.printing(bench + "BENCH end\n"), "--mode", "bench")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertRegex(done.stdout, r"page_alloc\.alloc_free\s+100\s+30\.00\s+3\.00x")
        self.assertRegex(done.stdout, r"heap\.bytes\s+-\s+4096 bytes\s+-")
        done = self.run_runner(self.printing(bench), "--mode", "bench")
        self.assertEqual(done.returncode, ktap_run.EXIT_TESTS)
        self.assertIn("no 'BENCH end' line", done.stdout)

    def test_usage_errors_exit_2(self):
        done = subprocess.run([sys.executable, RUNNER, "--target", "x86_64"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, ktap_run.EXIT_USAGE)
        done = subprocess.run([sys.executable, RUNNER, "--target", "x86_64", "--mode", "bogus",
                               "--", "true"], capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, ktap_run.EXIT_USAGE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not yet reaped by init counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _c_compiler():
    for candidate in ("/opt/swift/usr/bin/clang", "cc", "gcc", "clang"):
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and os.access(path, os.X_OK):
            return path
    return None


@unittest.skipUnless(_c_compiler() and ktap_run.find_tool("llvm-symbolizer"),
                     "needs a C compiler and llvm-symbolizer")
class SymbolizeTests(unittest.TestCase):
    """Builds a small ELF with debug info and checks that panic addresses come back as
    function and file:line."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ktap-sym-")
        source = os.path.join(cls.tmp, "kernel.c")
        with open(source, "w") as handle:
            handle.write("__attribute__((noinline)) int page_fault_here(int x) {\n"
                         "    return x * 3;\n"
                         "}\n"
                         "int main(void) { return page_fault_here(2); }\n")
        cls.elf = os.path.join(cls.tmp, "kernel.elf")
        subprocess.run([_c_compiler(), "-g", "-O0", "-fno-pie", "-no-pie", source, "-o",
                        cls.elf], check=True, capture_output=True, timeout=120)
        nm = ktap_run.find_tool("llvm-nm") or shutil.which("nm")
        symbols = subprocess.run([nm, cls.elf], capture_output=True, text=True,
                                 check=True).stdout
        cls.address = next(int(line.split()[0], 16) for line in symbols.splitlines()
                            if line.endswith(" page_fault_here"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_symbolize_maps_addresses_to_function_and_line(self):
        frames = ktap_run.symbolize(self.elf, [self.address + 4, 0x10],
                                    ktap_run.find_tool("llvm-symbolizer"))
        self.assertEqual(frames[self.address + 4][0].function, "page_fault_here")
        self.assertRegex(frames[self.address + 4][0].location, r"kernel\.c:[12](:\d+)?$")
        self.assertIn(0x10, frames)

    def test_runner_prints_function_and_file_line_under_the_panic(self):
        log = (f"KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: boot\n    1..1\n"
               f"KERNEL PANIC: breakpoint\n  in self-test boot.traps_return\n"
               f"  pc 0x{self.address + 4:016x}\n  bt #0 0x{self.address + 4:016x}\n"
               f"KERNEL PANIC: end\n")
        fake = os.path.join(self.tmp, "fake.py")
        with open(fake, "w") as handle:
            handle.write(f"import sys\nsys.stdout.write({log!r})\nsys.exit(35)\n")
        done = subprocess.run([sys.executable, RUNNER, "--target", "x86_64", "--elf", self.elf,
                               "--log", os.path.join(self.tmp, "x.log"), "--success-exit", "33",
                               "--", sys.executable, fake],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, ktap_run.EXIT_TESTS)
        self.assertRegex(done.stdout, r"pc\s+0x[0-9a-f]{16}\s+page_fault_here at \S*kernel\.c:\d")
        self.assertRegex(done.stdout, r"bt #0\s+0x[0-9a-f]{16}\s+page_fault_here at ")
        self.assertIn("crashed: boot.traps_return", done.stdout)


class EvaluateTests(unittest.TestCase):
    """The verdict logic on its own: which exit code wins when several things went wrong."""

    def verdict(self, mode="test", stdout=GOOD, status=33, accepted=(33,), **outcome):
        return ktap_run.evaluate(mode, ktap_run.Outcome(stdout=stdout.encode(),
                                                        returncode=status, **outcome),
                                 accepted, "x86_64", 900)

    def test_priorities(self):
        self.assertEqual(self.verdict().code, 0)
        self.assertEqual(self.verdict(timed_out=True, stdout="", status=-9).code, 4)
        self.assertEqual(self.verdict(timed_out=True, stdout=FAILING, status=-9).code, 4)
        self.assertEqual(self.verdict(stdout="", status=33).code, 5)
        self.assertEqual(self.verdict(stdout="", status=1, stderr="qemu: bad\n").code, 3)
        self.assertEqual(self.verdict(stdout=FAILING, status=35).code, 1)
        self.assertEqual(self.verdict(stdout=GOOD, status=35).code, 3)
        self.assertEqual(self.verdict(stdout=GOOD, start_error="cannot start").code, 3)
        self.assertEqual(self.verdict(interrupted=True, status=-15).code, 130)
        both = self.verdict(stdout=PANIC_MID_TEST, status=35)
        self.assertEqual(both.code, 1)
        self.assertTrue(any("KERNEL PANIC: page fault" in r for r in both.reasons))
        self.assertTrue(any("exit status 35" in r for r in both.reasons))

    def test_our_own_kill_is_not_a_qemu_error(self):
        verdict = self.verdict(timed_out=True, status=-15, stdout=GOOD,
                               stderr="qemu-system-x86_64: terminating on signal 15 from pid 9\n")
        self.assertEqual(verdict.reasons, ["timeout: no verdict after 900 s; QEMU killed"])

    def test_describe_status(self):
        self.assertEqual(ktap_run.describe_status(33, "x86_64"),
                         "exit status 33 (isa-debug-exit wrote 0x10)")
        self.assertEqual(ktap_run.describe_status(1, "x86_64"), "exit status 1")
        self.assertEqual(ktap_run.describe_status(1, "aarch64"), "exit status 1")
        self.assertEqual(ktap_run.describe_status(-9, "aarch64"), "killed by signal SIGKILL")


# -- bench report ----------------------------------------------------------------------------

BENCH_LOG = textwrap.dedent("""\
    swift-vm-kernel on aarch64
    BENCH name=stray.before_begin ops=1 cycles=1 per_op=1.00
    BENCH begin suites=2
    BENCH name=page_alloc.baseline ops=1000 cycles=20000 per_op=20.00
    BENCH name=page_alloc.alloc_free ops=1000 cycles=50000 per_op=50.00
    BENCH name=heap.alloc_free ops=3 cycles=100 per_op=33.33
    BENCH name=heap.chain_depth value=7 unit=links
    BENCH end
    """)


class BenchReportTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def test_parse_and_ratios(self):
        run = bench_report.parse_bench(BENCH_LOG.splitlines(), arch="aarch64")
        self.assertEqual(run.problems, [])
        self.assertEqual(run.declared_suites, 2)
        self.assertEqual([e.name for e in run.entries], [
            "page_alloc.baseline", "page_alloc.alloc_free", "heap.alloc_free",
            "heap.chain_depth"])
        baseline = run.baseline()
        self.assertEqual(baseline.name, "page_alloc.baseline")
        self.assertAlmostEqual(run.ratio(run.entries[1], baseline), 2.5)
        self.assertAlmostEqual(run.entries[2].cycles_per_op, 100 / 3)
        self.assertIsNone(run.ratio(run.entries[3], baseline))
        self.assertIsNone(run.baseline("heap.chain_depth"), "a value entry is no baseline")
        self.assertIsNone(run.baseline("nope"))
        labelled = bench_report.parse_bench(BENCH_LOG.replace("page_alloc.baseline",
                                                              "memory.baseline_write_4k")
                                            .splitlines())
        self.assertEqual(labelled.baseline().name, "memory.baseline_write_4k")
        none = bench_report.parse_bench(BENCH_LOG.replace("page_alloc.baseline", "a.b")
                                        .splitlines())
        self.assertIsNone(none.baseline())
        self.assertIn("(no baseline: ratios omitted)", bench_report.format_table(none))
        other = run.baseline("heap.alloc_free")
        self.assertAlmostEqual(run.ratio(run.entries[1], other), 50 / (100 / 3))
        table = bench_report.format_table(run)
        self.assertIn("(baseline page_alloc.baseline)", table)
        self.assertRegex(table, r"page_alloc\.alloc_free\s+1000\s+50\.00\s+2\.50x")
        self.assertRegex(table, r"heap\.chain_depth\s+-\s+7 links\s+-")

    def test_problems(self):
        run = bench_report.parse_bench(BENCH_LOG.replace("BENCH end\n", "").splitlines())
        self.assertEqual(run.problems, ["no 'BENCH end' line (the benchmark run did not finish)"])
        run = bench_report.parse_bench(["boot"])
        self.assertEqual(run.problems, ["no 'BENCH begin' line"])
        run = bench_report.parse_bench(["BENCH begin suites=0", "BENCH end"])
        self.assertEqual(len(run.problems), 1)
        run = bench_report.parse_bench(BENCH_LOG.replace("ops=3 ", "ops=x ").splitlines())
        self.assertEqual(len(run.problems), 1)
        self.assertIn("malformed BENCH line", run.problems[0])
        run = bench_report.parse_bench(BENCH_LOG.replace("heap.alloc_free",
                                                         "page_alloc.alloc_free").splitlines())
        self.assertIn("measured twice", run.problems[0])

    def test_cli_writes_a_table_per_arch_and_the_csv(self):
        x86 = self.write("bench-x86_64.log", BENCH_LOG)
        arm = self.write("bench-aarch64.log", BENCH_LOG.replace("cycles=50000", "cycles=40000"))
        out = os.path.join(self.tmp, "out", "report.csv")
        done = subprocess.run([sys.executable, BENCH, x86, arm, "--csv", out],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("== x86_64 (baseline page_alloc.baseline)", done.stdout)
        self.assertIn("== aarch64 (baseline page_alloc.baseline)", done.stdout)
        self.assertRegex(done.stdout, r"2\.50x[\s\S]*2\.00x")
        with open(out) as handle:
            rows = list(csv.DictReader(handle))
        self.assertEqual(len(rows), 8)
        self.assertEqual(rows[1]["arch"], "x86_64")
        self.assertEqual((rows[1]["name"], rows[1]["ratio"]), ("page_alloc.alloc_free", "2.5000"))
        self.assertEqual((rows[5]["arch"], rows[5]["ratio"]), ("aarch64", "2.0000"))
        self.assertEqual((rows[3]["value"], rows[3]["unit"]), ("7", "links"))

    def test_cli_failures(self):
        bad = self.write("bench-x86_64.log", BENCH_LOG.replace("BENCH end\n", ""))
        out = os.path.join(self.tmp, "r.csv")
        done = subprocess.run([sys.executable, BENCH, bad, "--csv", out], capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(done.returncode, 1)
        self.assertIn("no 'BENCH end' line", done.stderr)
        good = self.write("bench-aarch64.log", BENCH_LOG)
        done = subprocess.run([sys.executable, BENCH, good, "--baseline", "nope", "--csv", out],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 1)
        self.assertIn("no timed entry named 'nope'", done.stderr)
        done = subprocess.run([sys.executable, BENCH, os.path.join(self.tmp, "absent.log"),
                               "--csv", out], capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 1)

    def test_arch_from_file_name(self):
        self.assertEqual(bench_report.arch_of("build/ktap/bench-x86_64.log"), "x86_64")
        self.assertEqual(bench_report.arch_of("/x/bench-aarch64.log"), "aarch64")
        self.assertEqual(bench_report.arch_of("raspi3b.log"), "raspi3b")


# -- ensure-deps.sh --------------------------------------------------------------------------

class EnsureDepsTests(unittest.TestCase):
    """Runs the script with a PATH holding only chosen tools, so "missing" is under control."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="deps-")
        os.chmod(self.tmp, 0o755)
        self.bin = os.path.join(self.tmp, "bin")
        os.mkdir(self.bin)
        for tool in ("id", "sed", "cat"):
            os.symlink(shutil.which(tool), os.path.join(self.bin, tool))
        os.symlink("/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                   os.path.join(self.bin, "python3"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, *tools):
        for tool in tools:
            os.symlink(shutil.which(tool), os.path.join(self.bin, tool))

    def run_script(self, *args, as_user=None):
        command = ["/bin/sh", ENSURE, *args]
        if as_user is not None:
            command = [shutil.which("setpriv"), f"--reuid={as_user}", f"--regid={as_user}",
                       "--clear-groups", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60,
                              env={"PATH": self.bin, "HOME": self.tmp})

    def test_unknown_argument_exits_2(self):
        self.assertEqual(self.run_script("--bogus").returncode, 2)

    @unittest.skipUnless(os.getuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_non_root_prints_the_exact_command_and_exits_1(self):
        done = self.run_script("--need-qemu", as_user=65534)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("    sudo apt-get install -y make qemu-system-x86 qemu-system-arm "
                      "qemu-utils\n", done.stderr)

    @unittest.skipUnless(os.getuid() == 0, "needs root (the root path runs apt-get)")
    def test_root_runs_apt_get_update_and_install(self):
        calls = os.path.join(self.tmp, "calls")
        fake = os.path.join(self.bin, "apt-get")
        with open(fake, "w") as handle:
            handle.write(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
        os.chmod(fake, 0o755)
        done = self.run_script("--need-qemu")
        # The fake apt-get installs nothing, so the recheck must fail.
        self.assertEqual(done.returncode, 1)
        self.assertIn("still missing after apt-get install", done.stderr)
        with open(calls) as handle:
            self.assertEqual(handle.read().splitlines(), [
                "update", "install -y make qemu-system-x86 qemu-system-arm qemu-utils"])

    @unittest.skipUnless(os.getuid() == 0, "needs root (the root path runs apt-get)")
    def test_failing_apt_get_fails(self):
        fake = os.path.join(self.bin, "apt-get")
        with open(fake, "w") as handle:
            handle.write("#!/bin/sh\nexit 100\n")
        os.chmod(fake, 0o755)
        done = self.run_script()
        self.assertEqual(done.returncode, 1)
        self.assertIn("apt-get failed installing: make", done.stderr)

    @unittest.skipUnless(all(shutil.which(t) for t in ("make", "qemu-system-x86_64",
                                                       "qemu-system-aarch64", "qemu-img"))
                         and SWIFTC, "needs make, QEMU and swiftc installed")
    def test_everything_present_exits_0(self):
        self.add("make", "qemu-system-x86_64", "qemu-system-aarch64", "qemu-img")
        if not SWIFTC.startswith("/opt/swift/"):
            self.add("swiftc")
        done = self.run_script("--need-qemu")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout + done.stderr, "")
        # Without --need-qemu, QEMU is not asked for.
        os.remove(os.path.join(self.bin, "qemu-img"))
        self.assertEqual(self.run_script().returncode, 0)


if __name__ == "__main__":
    unittest.main()
