#!/usr/bin/env python3
"""bench_report: reads the kernel's BENCH lines and reports cycles per op against a baseline.

The benchmark build prints (Kernel/Support/Benchmark.swift):

    BENCH begin suites=N
    BENCH name=<suite>.<label> ops=<n> cycles=<total> per_op=<x.yy>
    BENCH name=<suite>.<label> value=<v> unit=<unit>
    BENCH end

TCG time is not real time, so only ratios within one run mean anything: each measurement is
shown as a ratio of its cycles per op to the baseline of the same log: the entry named by
--baseline, else the one whose name ends with `.baseline`, else the first whose label starts
with `baseline` (`memory.baseline_write_4k`). This script never judges the numbers.

Usage: python3 scripts/bench_report.py [--baseline NAME] [--csv PATH] LOG...
Writes build/bench/report.csv (under the repository) unless --csv says otherwise. Exits 1 if
a log cannot be read, has no `BENCH begin`/`BENCH end`, has no measurement, or lacks the
baseline named by --baseline.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, TextIO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CSV = os.path.join(REPO, "build", "bench", "report.csv")

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_BEGIN = re.compile(r"^BENCH begin(?:\s+suites=(\d+))?\s*$")
_END = re.compile(r"^BENCH end\s*$")
_TIMED = re.compile(r"^BENCH name=(\S+) ops=(\d+) cycles=(\d+) per_op=(\d+(?:\.\d+)?)\s*$")
_VALUE = re.compile(r"^BENCH name=(\S+) value=(-?\d+(?:\.\d+)?) unit=(\S+)\s*$")


@dataclass
class BenchEntry:
    """One BENCH measurement: timed (ops, cycles, per_op) or a value with a unit."""
    name: str
    line: int
    ops: Optional[int] = None
    cycles: Optional[int] = None
    per_op: Optional[float] = None     # as printed (two decimals)
    value: Optional[float] = None
    unit: Optional[str] = None

    @property
    def is_timed(self) -> bool:
        return self.cycles is not None

    @property
    def cycles_per_op(self) -> Optional[float]:
        """Cycles per op from the raw totals (more precise than the printed per_op)."""
        if not self.is_timed:
            return None
        return self.cycles / max(self.ops, 1)


@dataclass
class BenchRun:
    """The BENCH lines of one log."""
    source: str = ""
    arch: str = ""
    began: bool = False
    ended: bool = False
    declared_suites: Optional[int] = None
    entries: List[BenchEntry] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    def baseline(self, name: Optional[str] = None) -> Optional[BenchEntry]:
        """The timed entry named `name`; without a name, the first timed entry whose name ends
        with `.baseline`, else the first whose label starts with `baseline`
        (e.g. `memory.baseline_write_4k`)."""
        timed = [entry for entry in self.entries if entry.is_timed]
        if name:
            return next((entry for entry in timed if entry.name == name), None)
        exact = [entry for entry in timed if entry.name.endswith(".baseline")]
        if exact:
            return exact[0]
        return next((entry for entry in timed
                     if entry.name.rsplit(".", 1)[-1].startswith("baseline")), None)

    def ratio(self, entry: BenchEntry, baseline: Optional[BenchEntry]) -> Optional[float]:
        if baseline is None or not entry.is_timed:
            return None
        base = baseline.cycles_per_op
        if not base:
            return None
        return entry.cycles_per_op / base


def arch_of(path: str) -> str:
    """`build/ktap/bench-x86_64.log` -> `x86_64`; otherwise the file name without extension."""
    stem = os.path.basename(path)
    if stem.endswith(".log"):
        stem = stem[:-4]
    return stem[len("bench-"):] if stem.startswith("bench-") else stem


def parse_bench(lines: Iterable[str], source: str = "", arch: str = "") -> BenchRun:
    """Collects the BENCH lines between `BENCH begin` and `BENCH end`.

    Lines outside the frame are ignored (a second `BENCH begin` is a problem); a BENCH line
    inside it that fits neither form is a problem, as is a missing `BENCH end`.
    """
    run = BenchRun(source=source, arch=arch)
    names = set()
    for number, raw in enumerate(lines, 1):
        line = _ANSI.sub("", raw).replace("\r", "").strip()
        if not line.startswith("BENCH"):
            continue
        begin = _BEGIN.match(line)
        if begin:
            if run.began:
                run.problems.append(f"line {number}: a second 'BENCH begin'")
                continue
            run.began = True
            run.declared_suites = int(begin.group(1)) if begin.group(1) else None
            continue
        if not run.began or run.ended:
            continue
        if _END.match(line):
            run.ended = True
            continue
        timed = _TIMED.match(line)
        value = _VALUE.match(line)
        if timed:
            entry = BenchEntry(name=timed.group(1), line=number, ops=int(timed.group(2)),
                               cycles=int(timed.group(3)), per_op=float(timed.group(4)))
        elif value:
            entry = BenchEntry(name=value.group(1), line=number, value=float(value.group(2)),
                               unit=value.group(3))
        else:
            run.problems.append(f"line {number}: malformed BENCH line: {line}")
            continue
        if entry.name in names:
            run.problems.append(f"line {number}: '{entry.name}' measured twice")
        names.add(entry.name)
        run.entries.append(entry)
    if not run.began:
        run.problems.append("no 'BENCH begin' line")
    elif not run.ended:
        run.problems.append("no 'BENCH end' line (the benchmark run did not finish)")
    elif not run.entries:
        run.problems.append("no BENCH measurements between 'BENCH begin' and 'BENCH end'")
    return run


def parse_bench_file(path: str) -> BenchRun:
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8", errors="replace")
    return parse_bench(text.splitlines(), source=path, arch=arch_of(path))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def table_rows(run: BenchRun, baseline_name: Optional[str] = None) -> List[List[str]]:
    baseline = run.baseline(baseline_name)
    rows = []
    for entry in run.entries:
        if entry.is_timed:
            ratio = run.ratio(entry, baseline)
            rows.append([entry.name, str(entry.ops), f"{entry.cycles_per_op:.2f}",
                         f"{ratio:.2f}x" if ratio is not None else "-"])
        else:
            rows.append([entry.name, "-", f"{_number(entry.value)} {entry.unit}", "-"])
    return rows


def format_table(run: BenchRun, baseline_name: Optional[str] = None) -> str:
    """The run as an aligned text table: name, ops, cycles/op (or value), ratio."""
    baseline = run.baseline(baseline_name)
    header = ["name", "ops", "cycles/op", "ratio"]
    rows = table_rows(run, baseline_name)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(4)]
    title = f"== {run.arch or run.source or 'bench'}"
    title += f" (baseline {baseline.name})" if baseline else " (no baseline: ratios omitted)"
    out = [title]
    out.append("  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i])
                         for i, h in enumerate(header)).rstrip())
    for row in rows:
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                             for i, c in enumerate(row)).rstrip())
    return "\n".join(out)


CSV_FIELDS = ["arch", "name", "ops", "cycles", "cycles_per_op", "ratio", "value", "unit",
              "baseline"]


def csv_rows(runs: List[BenchRun], baseline_name: Optional[str] = None) -> List[dict]:
    rows = []
    for run in runs:
        baseline = run.baseline(baseline_name)
        for entry in run.entries:
            ratio = run.ratio(entry, baseline)
            rows.append({
                "arch": run.arch,
                "name": entry.name,
                "ops": entry.ops if entry.is_timed else "",
                "cycles": entry.cycles if entry.is_timed else "",
                "cycles_per_op": f"{entry.cycles_per_op:.4f}" if entry.is_timed else "",
                "ratio": f"{ratio:.4f}" if ratio is not None else "",
                "value": _number(entry.value) if entry.value is not None else "",
                "unit": entry.unit or "",
                "baseline": baseline.name if baseline else "",
            })
    return rows


def write_csv(runs: List[BenchRun], path: str, baseline_name: Optional[str] = None) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(runs, baseline_name))


def report(runs: List[BenchRun], out: TextIO, baseline_name: Optional[str] = None) -> List[str]:
    """Prints a table per run; returns the problems that make the report fail."""
    failures = []
    for index, run in enumerate(runs):
        if index:
            out.write("\n")
        out.write(format_table(run, baseline_name) + "\n")
        for problem in run.problems:
            out.write(f"  problem: {problem}\n")
            failures.append(f"{run.source or run.arch}: {problem}")
        if baseline_name and run.baseline(baseline_name) is None:
            failures.append(f"{run.source or run.arch}: no timed entry named '{baseline_name}'")
            out.write(f"  problem: no timed entry named '{baseline_name}'\n")
    return failures


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Report the kernel's BENCH lines: cycles per op and ratio to a baseline.")
    parser.add_argument("logs", nargs="+", metavar="LOG",
                        help="serial logs, e.g. build/ktap/bench-x86_64.log")
    parser.add_argument("--baseline", metavar="NAME",
                        help="entry to divide by (default: the one ending in '.baseline', "
                             "else the first whose label starts with 'baseline')")
    parser.add_argument("--csv", default=DEFAULT_CSV, metavar="PATH",
                        help="where to write the CSV (default: build/bench/report.csv)")
    args = parser.parse_args(argv)
    runs, failures = [], []
    for path in args.logs:
        try:
            runs.append(parse_bench_file(path))
        except OSError as error:
            failures.append(f"{path}: {error.strerror or error}")
    failures += report(runs, sys.stdout, args.baseline)
    if runs:
        write_csv(runs, args.csv, args.baseline)
        print(f"wrote {os.path.relpath(args.csv)}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
