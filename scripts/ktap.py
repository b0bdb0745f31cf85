"""ktap: a parser for KTAP version 1 as Linux KUnit prints it, and a strict format checker.

The kernel's serial log is boot noise, then one KTAP document:

    KTAP version 1
    1..S
        KTAP version 1
        # Subtest: NAME
        1..N
        # diagnostics for the next result
        ok 1 test_name
        not ok 2 test_name
        ok 3 test_name # SKIP reason
        # NAME: pass:1 fail:1 skip:1 total:3
    not ok 1 NAME
    # Totals: pass:1 fail:1 skip:1 total:3

Invariants of `parse`:
- It never raises on any input: what does not fit is either ignored as an unknown line
  (the KTAP spec allows those anywhere) or reported as a `Problem`.
- Nesting follows indentation: a block is opened by a version line (or a TAP14 `# Subtest:`
  header) indented deeper than its parent and closed by a result line at the parent's
  indentation. Any depth works; the kernel uses two levels (document -> suite -> test).
- Every plan entry ends up as exactly one `Test` in its block: the ones that reported, plus
  `crash` for the entry that was running when a panic hit or the output ended, and `missing`
  for entries that never started.
- `KtapResult.ok` is True only when there is a complete document and no problem at all.

`check_format` is stricter than `parse`: it checks the rules of the KTAP v1 spec
(Documentation/dev-tools/ktap.rst) plus KUnit's conventions, and reports every violation.
The host runner uses `parse`; the tests use `check_format` to hold the kernel's harness to
the rules that `kunit.py parse` relies on (numbering, plans, names, nesting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Tuple, Union

# Kinds of problems, in the order a reader cares about them.
NO_KTAP = "no_ktap"            # no `KTAP version` line at all
PANIC = "panic"                # a kernel panic line
NOT_OK = "not_ok"              # a failing test (`not ok` without SKIP/TODO/XFAIL)
MISSING = "missing"            # a plan entry that never reported
TRUNCATED = "truncated"        # output ended inside the document
OUT_OF_ORDER = "out_of_order"  # result number is not previous + 1
DUPLICATE = "duplicate"        # result number reported twice in one block
EXTRA = "extra"                # result number beyond the plan
NO_PLAN = "no_plan"            # a block without `1..N`, so missing entries cannot be known
NAME_MISMATCH = "name_mismatch"  # `# Subtest: X` closed by `ok K Y`
INCONSISTENT = "inconsistent"  # parent says ok but a subtest failed
TOTALS_MISMATCH = "totals_mismatch"  # `# Totals:`/`# NAME: pass:..` disagree with the results
RESTARTED = "restarted"        # a second top-level `KTAP version` line (machine reset?)
BAD_VERSION = "bad_version"    # a version other than KTAP 1 / TAP 13 / TAP 14

PROBLEM_KINDS = (NO_KTAP, PANIC, NOT_OK, MISSING, TRUNCATED, OUT_OF_ORDER, DUPLICATE, EXTRA,
                 NO_PLAN, NAME_MISMATCH, INCONSISTENT, TOTALS_MISMATCH, RESTARTED, BAD_VERSION)

# Test statuses.
PASS, FAIL, SKIP, CRASH, MISSING_STATUS = "pass", "fail", "skip", "crash", "missing"

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_]|c)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_VERSION = re.compile(r"(K?TAP) version (\d+)\s*$")
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#.*)?$")
_RESULT = re.compile(r"^(ok|not ok) (\d+)(?: - | |$)(.*)$")
_SUBTEST = re.compile(r"^# Subtest: (.*?)\s*$")
_DIAG = re.compile(r"^#(?: (.*)|)$")
_COUNTS = re.compile(r"^(.+?): pass:(\d+) fail:(\d+) skip:(\d+) total:(\d+)\s*$")
_DIRECTIVES = ("SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR")
_BACKTRACE = re.compile(r"^\s*(bt\s*#\s*(\d+)|pc)\s*[:=]?\s*(0x[0-9a-fA-F]+)\b")
_PANIC_CONTEXT = re.compile(r"^\s*in self-test (\S+?)\.(\S+)\s*$")
_PANIC_END = "KERNEL PANIC: end"
_PANIC_DETAIL_LIMIT = 200


@dataclass
class Problem:
    """Something wrong with the run; `line` is 1-based in the log, when known."""
    kind: str
    message: str
    line: Optional[int] = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.kind}: {where}{self.message}"


@dataclass
class BacktraceEntry:
    """One address the kernel printed in a panic: `pc 0x...` or `bt #N 0x...`."""
    label: str      # "pc" or "bt #N"
    address: int
    line: int
    text: str       # the line as printed


@dataclass
class Panic:
    """A kernel panic: its banner line, the lines printed after it, and where it happened."""
    line: int
    message: str
    details: List[str] = field(default_factory=list)
    backtrace: List[BacktraceEntry] = field(default_factory=list)
    suite: Optional[str] = None   # from `in self-test SUITE.TEST`, else from the KTAP position
    test: Optional[str] = None


@dataclass
class Test:
    """A KTAP test: a leaf test case or, with `tests`, a test with subtests (a suite)."""
    name: str
    number: Optional[int]
    status: str                     # pass | fail | skip | crash | missing
    directive: Optional[str] = None  # SKIP, TODO, XFAIL, TIMEOUT, ERROR
    reason: str = ""                # text after the directive (or after `#` without one)
    diagnostics: List[str] = field(default_factory=list)  # `# ` lines before the result
    log: List[str] = field(default_factory=list)          # unknown lines printed meanwhile
    tests: List["Test"] = field(default_factory=list)     # subtests, in plan order
    plan: Optional[int] = None
    line: Optional[int] = None      # line of the result (or of the block start)
    has_subtests: bool = False

    @property
    def label(self) -> str:
        return self.name or (f"#{self.number}" if self.number is not None else "?")

    def leaves(self, path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], "Test"]]:
        """Every leaf under this test (itself if it has no subtests), with its name path."""
        here = path + (self.label,)
        if not self.has_subtests:
            yield here, self
            return
        for test in self.tests:
            yield from test.leaves(here)


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0      # includes crashed
    skipped: int = 0
    crashed: int = 0
    missing: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def add(self, test: Test) -> None:
        if test.status == PASS:
            self.passed += 1
        elif test.status == SKIP:
            self.skipped += 1
        elif test.status == FAIL:
            self.failed += 1
        elif test.status == CRASH:
            self.failed += 1
            self.crashed += 1
        elif test.status == MISSING_STATUS:
            self.missing += 1

    def summary_line(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


@dataclass
class KtapResult:
    """The parsed log. `suites` are the top-level tests of the first KTAP document."""
    found: bool = False
    version: Optional[str] = None
    plan: Optional[int] = None
    suites: List[Test] = field(default_factory=list)
    diagnostics: List[str] = field(default_factory=list)   # top-level `# ` lines (e.g. Totals)
    problems: List[Problem] = field(default_factory=list)
    panics: List[Panic] = field(default_factory=list)
    totals: Optional[dict] = None     # from `# Totals: pass:N fail:N skip:N total:N`
    complete: bool = False            # every top-level plan entry reported
    line_count: int = 0

    @property
    def ok(self) -> bool:
        return self.found and self.complete and not self.problems

    def leaves(self) -> Iterator[Tuple[Tuple[str, ...], Test]]:
        for suite in self.suites:
            yield from suite.leaves()

    def counts(self) -> Counts:
        counts = Counts()
        for _, test in self.leaves():
            counts.add(test)
        return counts

    def suite_counts(self, suite: Test) -> Counts:
        counts = Counts()
        for _, test in suite.leaves():
            counts.add(test)
        return counts

    def problems_of(self, kind: str) -> List[Problem]:
        return [p for p in self.problems if p.kind == kind]

    def has(self, kind: str) -> bool:
        return any(p.kind == kind for p in self.problems)


def clean_line(raw: str) -> str:
    """Removes what a serial console adds around text: CR, ANSI escapes, other control bytes.

    A tab becomes four spaces, so older KUnit output (one tab per level) nests like KUnit's
    current four-space indentation.
    """
    line = raw.rstrip("\r\n")
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    line = line.replace("\t", "    ")
    if _CONTROL.search(line):
        line = _CONTROL.sub("", line)
    return line


def split_lines(text: Union[str, bytes, Iterable[str]]) -> Tuple[List[str], bool]:
    """Splits a log into cleaned lines; also says whether the last line was cut off.

    A str or bytes log is cut off when it does not end with a newline. An iterable of lines
    (e.g. an open file) is cut off when its last line has no newline while the others do.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if isinstance(text, str):
        partial = bool(text) and not text.endswith("\n")
        raw_lines = text.split("\n")
        if raw_lines and raw_lines[-1] == "":
            raw_lines.pop()
    else:
        raw_lines = [str(line) for line in text]
        partial = (len(raw_lines) > 1 and raw_lines[-2].endswith("\n")
                   and not raw_lines[-1].endswith("\n"))
    return [clean_line(line) for line in raw_lines], partial


def is_panic_line(line: str) -> bool:
    """A kernel panic banner: a line starting with PANIC or containing KERNEL PANIC."""
    stripped = line.strip()
    if stripped.startswith(_PANIC_END):
        return False
    return stripped.startswith("PANIC") or "KERNEL PANIC" in stripped


def parse_result_line(content: str):
    """`ok 3 name # SKIP why` -> (is_ok, number, name, directive, reason), or None."""
    match = _RESULT.match(content)
    if not match:
        return None
    is_ok = match.group(1) == "ok"
    number = int(match.group(2))
    rest = match.group(3)
    directive, reason = None, ""
    if " # " in rest or rest.startswith("# ") or rest == "#" or rest.endswith(" #"):
        if rest.startswith("#"):
            name, tail = "", rest[1:]
        else:
            name, tail = rest.split(" # ", 1) if " # " in rest else (rest[:-2], "")
        tail = tail.strip()
        word = tail.split(" ", 1)[0] if tail else ""
        if word.upper() in _DIRECTIVES:
            directive = word.upper()
            reason = tail[len(word):].strip()
        else:
            reason = tail
    else:
        name = rest
    return is_ok, number, name.strip(), directive, reason


def status_of(is_ok: bool, directive: Optional[str]) -> str:
    """Maps a result line to a status, per the KTAP spec's directives."""
    if directive == "SKIP":
        return SKIP
    if directive in ("TIMEOUT", "ERROR"):
        return FAIL
    if directive in ("TODO", "XFAIL") and not is_ok:
        return SKIP   # an expected failure: neither passed nor a regression
    return PASS if is_ok else FAIL


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


class _Block:
    """An open KTAP block (the document, or a test with subtests) while parsing."""

    def __init__(self, indent: int, line: int, name: str = "", has_version: bool = True):
        self.indent = indent
        self.line = line
        self.name = name
        self.has_version = has_version
        self.plan: Optional[int] = None
        self.results: List[Test] = []
        self.seen: set = set()
        self.last_number = 0
        self.pending_diagnostics: List[str] = []   # `# ` lines waiting for the next result
        self.pending_log: List[str] = []           # unknown lines waiting for the next result
        self.counts_lines: List[Tuple[int, str, Tuple[int, int, int, int]]] = []
        self.crash_reason: Optional[str] = None    # a panic hit while this block was innermost


class _Parser:
    def __init__(self, lines: List[str], partial_last: bool):
        self.lines = lines
        self.partial_last = partial_last
        self.result = KtapResult(line_count=len(lines))
        self.stack: List[_Block] = []
        self.done = False        # the first document has ended
        self.restarted = False

    def problem(self, kind: str, message: str, line: Optional[int] = None) -> None:
        self.result.problems.append(Problem(kind, message, line))

    def where(self, block: _Block) -> str:
        """The dotted name of a block on the stack ('top level' for the document)."""
        names = [b.name or "?" for b in self.stack[1:self.stack.index(block) + 1]]
        return ".".join(names) or "top level"

    def qualified(self, block: _Block, test: Test) -> str:
        prefix = self.where(block)
        return test.label if prefix == "top level" else f"{prefix}.{test.label}"

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> KtapResult:
        self.scan_panics()
        usable = len(self.lines) - (1 if self.partial_last else 0)
        start, prefix = None, ""
        for index in range(usable):
            match = _VERSION.search(self.lines[index])
            if match:
                start = index
                prefix = self.lines[index][:match.start()]
                if not prefix.strip():
                    prefix = ""   # plain indentation: the document is simply indented
                break
        if start is None:
            if any(line.strip() for line in self.lines):
                self.problem(NO_KTAP, "no 'KTAP version' line in the output")
            else:
                self.problem(NO_KTAP, "no output at all")
        else:
            self.result.found = True
            for index in range(start, len(self.lines)):
                line = self.lines[index]
                if prefix and line.startswith(prefix):
                    line = line[len(prefix):]   # e.g. junk before the first version line
                if index >= usable:
                    self.unknown(line)   # cut off mid-line: its syntax cannot be trusted
                elif self.done:
                    self.after_document(line, index + 1)
                else:
                    self.feed(line, index + 1)
            if self.stack:
                self.end_document(len(self.lines))
        self.report_panics()
        order = {kind: i for i, kind in enumerate(PROBLEM_KINDS)}
        self.result.problems.sort(key=lambda p: order.get(p.kind, len(order)))
        return self.result

    def feed(self, line: str, number: int) -> None:
        content = line.strip()
        if not content:
            return
        indent = _indent(line)
        version = _VERSION.match(content)
        if version:
            self.on_version(indent, number, version)
            return
        top = self.stack[-1]
        if is_panic_line(content):
            if top.crash_reason is None:
                top.crash_reason = f"the kernel panicked at log line {number}"
            self.unknown(line)
            return
        subtest = _SUBTEST.match(content)
        if subtest:
            if indent == top.indent and len(self.stack) > 1 and not top.name \
                    and not top.results and top.plan is None:
                top.name = subtest.group(1)
                return
            if indent > top.indent:
                # A TAP14-style subtest header without a version line.
                self.stack.append(_Block(indent, number, subtest.group(1), has_version=False))
                return
        plan = _PLAN.match(content)
        if plan:
            if indent == top.indent and top.plan is None and not top.results:
                top.plan = int(plan.group(1))
                return
            if indent > top.indent and top.plan is not None:
                # A subtest block without version or header line.
                block = _Block(indent, number, has_version=False)
                block.plan = int(plan.group(1))
                self.stack.append(block)
                return
        result = parse_result_line(content)
        if result and self.on_result(indent, number, result):
            return
        diag = _DIAG.match(content)
        if diag:
            for block in reversed(self.stack):
                if block.indent == indent:
                    self.on_diagnostic(block, diag.group(1) or "", number)
                    return
                if block.indent < indent:
                    break
        self.unknown(line)

    def unknown(self, line: str) -> None:
        """An unknown line (allowed anywhere): kept as log of the test that is running."""
        if self.stack:
            self.stack[-1].pending_log.append(line)

    # -- line kinds ------------------------------------------------------------------------
    def on_version(self, indent: int, number: int, match) -> None:
        kind, version = match.group(1), int(match.group(2))
        if (kind, version) not in (("KTAP", 1), ("TAP", 13), ("TAP", 14)):
            self.problem(BAD_VERSION, f"unsupported version '{match.group(0).strip()}'", number)
        if not self.stack:
            self.result.version = match.group(0).strip()
            self.stack.append(_Block(indent, number))
            return
        if indent <= self.stack[0].indent:
            self.problem(RESTARTED, "a second top-level KTAP document started before the first "
                                    "ended (did the machine reset?)", number)
            self.restarted = True
            self.end_document(number)
            return
        while len(self.stack) > 1 and self.stack[-1].indent >= indent:
            self.abandon(number)
        self.stack.append(_Block(indent, number))

    def on_diagnostic(self, block: _Block, text: str, number: int) -> None:
        counts = _COUNTS.match(text)
        if counts:
            values = tuple(int(counts.group(i)) for i in range(2, 6))
            block.counts_lines.append((number, counts.group(1), values))
        block.pending_diagnostics.append(text)

    def on_result(self, indent: int, number: int, parsed) -> bool:
        """Handles a result line; False if no open block is at its indentation."""
        is_ok, test_number, name, directive, reason = parsed
        target = None
        for block in reversed(self.stack):
            if block.indent == indent:
                target = block
                break
            if block.indent < indent:
                break
        if target is None:
            return False
        test = None
        while self.stack[-1] is not target:
            if self.stack[-2] is target:
                # The usual case: this result line closes the subtest block above it.
                test = self.block_to_test(self.stack[-1], number, abandoned=False)
                self.stack.pop()
            else:
                self.abandon(number)
        if test is None:
            test = Test(name=name, number=test_number, status=PASS)
        elif test.name and test.name != name:
            self.problem(NAME_MISMATCH, f"subtest '{test.name}' ends with result '{name}'",
                         number)
        test.name = name or test.name
        test.number = test_number
        test.directive = directive
        test.reason = reason
        test.line = number
        test.diagnostics = target.pending_diagnostics + test.diagnostics
        test.log = target.pending_log + test.log
        target.pending_diagnostics, target.pending_log = [], []
        status = status_of(is_ok, directive)
        who = self.qualified(target, test)
        if test.has_subtests:
            failed = any(t.status in (FAIL, CRASH) for _, t in test.leaves())
            if status == PASS and failed:
                self.problem(INCONSISTENT, f"'{who}' is ok but a subtest failed", number)
                status = FAIL
            elif status == FAIL and not failed:
                # Nothing below explains it (e.g. the suite's init failed): report it itself.
                self.problem(NOT_OK, f"'{who}' not ok{_directive_text(directive, reason)}",
                             number)
        elif status == FAIL:
            self.problem(NOT_OK, f"'{who}' not ok{_directive_text(directive, reason)}", number)
        test.status = status
        self.add_result(target, test, number)
        root = self.stack[0]
        if target is root and root.plan is not None and \
                root.seen >= set(range(1, root.plan + 1)):
            self.end_document(number)
        return True

    def add_result(self, block: _Block, test: Test, number: int) -> None:
        n = test.number
        where = self.where(block)
        if n in block.seen:
            self.problem(DUPLICATE, f"result {n} reported twice in {where}", number)
        elif n != block.last_number + 1:
            self.problem(OUT_OF_ORDER, f"result {n} in {where} follows result "
                                       f"{block.last_number} (expected {block.last_number + 1})",
                         number)
        if block.plan is not None and not 1 <= n <= block.plan:
            self.problem(EXTRA, f"result {n} in {where} is outside the plan 1..{block.plan}",
                         number)
        block.seen.add(n)
        block.last_number = n
        block.results.append(test)

    # -- closing blocks --------------------------------------------------------------------
    def block_to_test(self, block: _Block, number: int, abandoned: bool) -> Test:
        """A block on top of the stack as a Test holding its subtests; checks its plan."""
        test = Test(name=block.name, number=None, status=CRASH if abandoned else PASS,
                    line=block.line, plan=block.plan, has_subtests=True)
        test.tests = self.fill_plan(block, number, crashed=abandoned)
        # Trailing `# ` lines (like KUnit's `# NAME: pass:..`) belong to the block itself.
        test.diagnostics = block.pending_diagnostics
        test.log = block.pending_log
        block.pending_diagnostics, block.pending_log = [], []
        for line, name, values in block.counts_lines:
            if name == block.name:
                self.check_counts(f"# {name}:", values, test.tests, line)
        return test

    def fill_plan(self, block: _Block, number: int, crashed: bool) -> List[Test]:
        """The block's results plus a `crash` entry for the one that was running (if the
        block was cut short) and a `missing` entry for every other unreported plan entry.
        Reported results keep their order of arrival, so out-of-order output stays visible."""
        where = self.where(block)
        reason = block.crash_reason or "the output ended"
        results = list(block.results)
        if block.plan is None:
            self.problem(NO_PLAN, f"no plan line in {where}", block.line)
            unreported = [block.last_number + 1] if crashed else []
        else:
            unreported = [n for n in range(1, block.plan + 1) if n not in block.seen]
        for index, n in enumerate(unreported):
            if crashed and index == 0:
                results.append(Test(name="", number=n, status=CRASH, reason=reason,
                                    diagnostics=block.pending_diagnostics,
                                    log=block.pending_log))
                block.pending_diagnostics, block.pending_log = [], []
                self.problem(MISSING, f"{where}: no result for entry {n} of the plan "
                                      f"(it was running when {reason})", number)
            else:
                results.append(Test(name="", number=n, status=MISSING_STATUS))
                plan = f" of 1..{block.plan}" if block.plan is not None else ""
                self.problem(MISSING, f"{where}: no result for plan entry {n}{plan}", number)
        return results   # reported ones in the order they came, then the unreported

    def abandon(self, number: int) -> None:
        """Pops a block whose result line never came; its parent records it as crashed."""
        block = self.stack[-1]
        parent = self.stack[-2]
        self.problem(TRUNCATED, f"'{self.where(block)}' never reported its result", number)
        test = self.block_to_test(block, number, abandoned=True)
        self.stack.pop()
        test.number = parent.last_number + 1
        test.reason = block.crash_reason or "the output ended"
        self.add_result(parent, test, number)

    def end_document(self, number: int) -> None:
        """Closes the document: after its last plan entry, at end of output, or on a restart."""
        root = self.stack[0]
        complete = len(self.stack) == 1 and root.plan is not None and \
            root.seen >= set(range(1, root.plan + 1))
        if not complete and not (root.plan is None and len(self.stack) == 1):
            reported = len(root.seen)
            planned = f" of {root.plan}" if root.plan is not None else ""
            self.problem(TRUNCATED, f"the output ended inside the KTAP document "
                                    f"({reported}{planned} top-level results)", number)
        while len(self.stack) > 1:
            self.abandon(number)
        self.result.suites = self.fill_plan(root, number, crashed=not complete and
                                            root.crash_reason is not None)
        self.result.plan = root.plan
        self.result.complete = complete
        self.result.diagnostics.extend(root.pending_diagnostics)
        for line, name, values in root.counts_lines:
            if name == "Totals":
                self.set_totals(values, line)
        self.stack = []
        self.done = True

    def after_document(self, line: str, number: int) -> None:
        """Past the document only a top-level Totals line and a restart matter."""
        content = line.strip()
        if _indent(line) != 0 or not content:
            return
        if _VERSION.match(content) and not self.restarted:
            self.problem(RESTARTED, "a second KTAP document follows the first "
                                    "(did the machine reset?)", number)
            self.restarted = True
            return
        diag = _DIAG.match(content)
        if diag:
            text = diag.group(1) or ""
            self.result.diagnostics.append(text)
            counts = _COUNTS.match(text)
            if counts and counts.group(1) == "Totals":
                self.set_totals(tuple(int(counts.group(i)) for i in range(2, 6)), number)

    def set_totals(self, values: Tuple[int, int, int, int], number: int) -> None:
        self.result.totals = dict(zip(("pass", "fail", "skip", "total"), values))
        self.check_counts("# Totals:", values, self.result.suites, number)

    def check_counts(self, label: str, values: Tuple[int, int, int, int],
                     tests: List[Test], number: int) -> None:
        """Checks a KUnit counts line (`pass:N fail:N skip:N total:N`) against the results."""
        actual = Counts()
        for test in tests:
            for _, leaf in test.leaves():
                actual.add(leaf)
        seen = (actual.passed, actual.failed, actual.skipped, actual.total)
        if tuple(values) != seen:
            self.problem(TOTALS_MISMATCH, f"'{label} pass:{values[0]} fail:{values[1]} "
                                          f"skip:{values[2]} total:{values[3]}' but the results "
                                          f"are pass:{seen[0]} fail:{seen[1]} skip:{seen[2]} "
                                          f"total:{seen[3]}", number)

    # -- panics ----------------------------------------------------------------------------
    def scan_panics(self) -> None:
        """Finds every panic banner and the backtrace printed after it, anywhere in the log."""
        current: Optional[Panic] = None
        for index, line in enumerate(self.lines):
            number = index + 1
            stripped = line.strip()
            if is_panic_line(line):
                if current is not None:
                    current.details.append(stripped)   # e.g. "recursive panic"
                    continue
                current = Panic(line=number, message=stripped)
                self.result.panics.append(current)
                continue
            if current is None:
                continue
            if stripped.startswith(_PANIC_END) or len(current.details) >= _PANIC_DETAIL_LIMIT \
                    or _VERSION.search(stripped) or _RESULT.match(stripped):
                current = None
                continue
            current.details.append(stripped)
            context = _PANIC_CONTEXT.match(stripped)
            if context:
                current.suite, current.test = context.group(1), context.group(2)
            entry = _BACKTRACE.match(line)
            if entry:
                label = "pc" if entry.group(1) == "pc" else f"bt #{entry.group(2)}"
                current.backtrace.append(BacktraceEntry(label, int(entry.group(3), 16), number,
                                                        stripped))

    def report_panics(self) -> None:
        crashed = [(path, test) for path, test in self.result.leaves() if test.status == CRASH]
        for panic in self.result.panics:
            if panic.suite and panic.test:
                where = f" in self-test {panic.suite}.{panic.test}"
                # Name the crashed entry after what the kernel said was running.
                for path, test in crashed:
                    if path[0] == panic.suite and not test.name:
                        test.name = panic.test
            elif crashed and crashed[0][1].reason.startswith("the kernel panicked"):
                path = crashed[0][0]
                panic.suite = path[0]
                panic.test = ".".join(path[1:]) or None
                where = f" while running {'.'.join(path)}"
            else:
                where = ""
            self.problem(PANIC, f"{panic.message}{where}", panic.line)


def _directive_text(directive: Optional[str], reason: str) -> str:
    if not directive and not reason:
        return ""
    return " (" + " ".join(part for part in (directive, reason) if part) + ")"


def parse(text: Union[str, bytes, Iterable[str]]) -> KtapResult:
    """Parses a whole serial log (boot noise, KTAP, anything after) into a KtapResult."""
    lines, partial = split_lines(text)
    return _Parser(lines, partial).run()


def parse_file(path: str) -> KtapResult:
    with open(path, "rb") as handle:
        return parse(handle.read())


# -- strict format check ---------------------------------------------------------------------

def check_format(text: Union[str, bytes, Iterable[str]], indent_step: int = 4,
                 allow_unknown: bool = False) -> List[str]:
    """Checks a KTAP document against the KTAP v1 spec and KUnit's layout; returns violations.

    Rules (ktap.rst, and what KUnit prints):
    1. The document starts with `KTAP version 1` at column 0; nothing before it is checked.
    2. Each block is `KTAP version 1`, then (nested blocks only) optionally `# Subtest: NAME`,
       then the plan `1..N`.
    3. Nested blocks are indented by exactly `indent_step` more spaces than their parent
       (KUnit uses 4; the spec's examples use 2).
    4. Result lines are `ok|not ok NUMBER [DESCRIPTION][ # [DIRECTIVE] [DATA]]`, numbered from 1
       up by 1, as many as the plan says; the description contains no `#`; the directive, if a
       keyword, is one of SKIP TODO XFAIL TIMEOUT ERROR; TIMEOUT and ERROR are `not ok`.
    5. A nested block is closed by its parent's result line, whose description equals the
       `# Subtest:` name; a parent with a failing subtest is `not ok`.
    6. Diagnostic lines are `# ...` at the block's indentation.
    7. With `allow_unknown=False`, any other line inside the document is a violation.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        text = "".join(line if line.endswith("\n") else line + "\n" for line in text)
    raw_lines = text.split("\n")
    lines, _ = split_lines(text)
    errors: List[str] = []
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "KTAP version 1"), None)
    if start is None:
        return ["rule 1: no 'KTAP version 1' line at column 0"]
    for index in range(start, len(lines)):
        if "\t" in raw_lines[index]:
            errors.append(f"line {index + 1}: rule 3: tab character (KUnit indents with spaces)")

    # Each frame: [indent, name, plan, next_number, expect ('version'|'header'|'plan'|'body'),
    #              any_failed]
    stack: List[list] = []
    ended = False
    for index in range(start, len(lines)):
        number = index + 1
        line = lines[index]
        if not line.strip():
            continue
        if ended:
            if line.startswith("# ") or line == "#":
                continue
            if not allow_unknown:
                errors.append(f"line {number}: rule 7: text after the document ended: {line!r}")
            continue
        indent = _indent(line)
        content = line.strip()
        if line != line.rstrip():
            errors.append(f"line {number}: trailing whitespace")
        if content == "KTAP version 1":
            expected = 0 if not stack else stack[-1][0] + indent_step
            if stack and stack[-1][4] in ("header", "plan"):
                errors.append(f"line {number}: rule 2: version line before the plan of the "
                              "enclosing block")
            if indent != expected:
                errors.append(f"line {number}: rule 3: version line indented {indent}, "
                              f"expected {expected}")
            stack.append([indent, None, None, 1, "header", False])
            continue
        if not stack:
            continue
        top = stack[-1]
        if indent == top[0] and content.startswith("# Subtest: "):
            if top[4] != "header" or len(stack) == 1:
                errors.append(f"line {number}: rule 2: '# Subtest:' header out of place")
            top[1] = content[len("# Subtest: "):]
            top[4] = "plan"
            continue
        plan = re.match(r"^1\.\.(\d+)$", content)
        if plan and indent == top[0]:
            if top[4] not in ("header", "plan"):
                errors.append(f"line {number}: rule 2: plan line out of place")
            top[2] = int(plan.group(1))
            top[4] = "body"
            continue
        result = re.match(r"^(ok|not ok) (\d+)(?: (.*))?$", content)
        if result and indent < top[0] and len(stack) > 1 and indent == stack[-2][0]:
            # Closes the nested block.
            child = stack.pop()
            top = stack[-1]
            if child[2] is not None and child[3] - 1 != child[2]:
                errors.append(f"line {number}: rule 4: block '{child[1]}' planned {child[2]} "
                              f"tests but reported {child[3] - 1}")
            if child[2] is None:
                errors.append(f"line {number}: rule 2: block '{child[1]}' has no plan line")
            parsed = parse_result_line(content)
            if parsed and child[1] is not None and parsed[2] != child[1]:
                errors.append(f"line {number}: rule 5: result '{parsed[2]}' closes subtest "
                              f"'{child[1]}'")
            if parsed and child[5] and parsed[0] and parsed[3] != "SKIP":
                errors.append(f"line {number}: rule 5: '{parsed[2]}' is ok but a subtest failed")
        if result and indent == top[0]:
            if top[4] != "body":
                errors.append(f"line {number}: rule 2: result line before the plan")
            parsed = parse_result_line(content)
            is_ok, n, name, directive, reason = parsed
            if n != top[3]:
                errors.append(f"line {number}: rule 4: result number {n}, expected {top[3]}")
            top[3] = n + 1
            rest = result.group(3) or ""
            description = rest.split(" # ", 1)[0] if " # " in rest else rest
            if "#" in description:
                errors.append(f"line {number}: rule 4: description contains '#'")
            if not name:
                errors.append(f"line {number}: rule 4: result without a description "
                              "(KUnit always names its tests)")
            if " # " in rest:
                tail = rest.split(" # ", 1)[1]
                word = tail.split(" ", 1)[0]
                if word.isupper() and word.isalpha() and word not in _DIRECTIVES:
                    errors.append(f"line {number}: rule 4: unknown directive '{word}'")
            if directive in ("TIMEOUT", "ERROR") and is_ok:
                errors.append(f"line {number}: rule 4: {directive} on an ok line")
            if status_of(is_ok, directive) == FAIL:
                top[5] = True
            if top[2] is not None and n > top[2]:
                errors.append(f"line {number}: rule 4: result {n} beyond plan 1..{top[2]}")
            if len(stack) == 1 and top[2] is not None and n >= top[2]:
                ended = True
            continue
        if content.startswith("#") and indent == top[0] and (content == "#" or
                                                             content.startswith("# ")):
            if top[4] == "header" and len(stack) > 1:
                top[4] = "plan"   # diagnostics before the plan end the header
            continue
        if not allow_unknown:
            errors.append(f"line {number}: rule 7: unknown line inside the document: {line!r}")
    if not ended:
        errors.append("rule 4: the document ended before its plan was complete")
    return errors


def main(argv: Optional[List[str]] = None) -> int:
    """`python3 scripts/ktap.py [--check] LOG`: judges a saved serial log without QEMU."""
    import argparse
    parser = argparse.ArgumentParser(description="Parse a KTAP serial log and report problems.")
    parser.add_argument("log", help="serial log, e.g. build/ktap/x86_64.log")
    parser.add_argument("--check", action="store_true",
                        help="also check the KTAP v1 format rules (unknown lines allowed)")
    args = parser.parse_args(argv)
    try:
        result = parse_file(args.log)
    except OSError as error:
        print(f"{args.log}: {error.strerror or error}")
        return 2
    for suite in result.suites:
        counts = result.suite_counts(suite)
        print(f"{suite.label}: {suite.status} (pass:{counts.passed} fail:{counts.failed} "
              f"skip:{counts.skipped} missing:{counts.missing})")
        for path, test in suite.leaves():
            if test.status in (FAIL, CRASH):
                print(f"  {test.status}: {'.'.join(path)}")
                for line in test.diagnostics:
                    print(f"      # {line}")
    failures = [str(p) for p in result.problems]
    if args.check:
        failures += [f"format: {e}" for e in check_format(open(args.log, "rb").read(),
                                                            allow_unknown=True)]
    for failure in failures:
        print(f"problem: {failure}")
    print(result.counts().summary_line())
    return 0 if result.ok and not failures else 1


if __name__ == "__main__":
    import sys
    sys.exit(main())
