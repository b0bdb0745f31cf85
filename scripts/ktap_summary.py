#!/usr/bin/env python3
"""ktap_summary: the closing verdict of `make test` over every boot's serial log.

Usage: python3 scripts/ktap_summary.py LOG...

Each log is parsed again and checked against the KTAP v1 format rules (boot messages before
the KTAP document are allowed); one line per log, then the totals as the last line,
`N passed, N failed, N skipped`. Exit status 1 if any log has a problem or a failure.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktap  # noqa: E402


def summarize(paths):
    passed = failed = skipped = 0
    ok = True
    for path in paths:
        result = ktap.parse_file(path)
        with open(path, "rb") as handle:
            format_errors = ktap.check_format(handle.read(), allow_unknown=True)
        counts = result.counts()
        passed += counts.passed
        failed += counts.failed + counts.missing
        skipped += counts.skipped
        problems = [str(p) for p in result.problems] + [f"format: {e}" for e in format_errors]
        verdict = "ok" if result.ok and not problems else "FAIL"
        ok = ok and verdict == "ok"
        print(f"{os.path.basename(path)}: {verdict}: {counts.summary_line()}")
        for problem in problems:
            print(f"  problem: {problem}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if ok and passed > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(summarize(sys.argv[1:]))
