#!/usr/bin/env python3
"""ktap_run: boots a kernel image in QEMU, saves the serial log, and judges the run.

Usage:
    python3 scripts/ktap_run.py --target x86_64 --elf build/x86_64/kernel.elf \
        --log build/ktap/x86_64.log --timeout 900 --success-exit 33 [--mode test|bench|run] \
        -- qemu-system-x86_64 ARGS...

The QEMU command must put the serial port on stdio (`-serial stdio` or `-nographic`). Every
line is echoed live and written raw to the log (QEMU's own stderr goes there too, between
serial lines). Then:
- a kernel panic's `pc 0x...` / `bt #N 0x...` lines are symbolized from the ELF with
  llvm-symbolizer (Swift names demangled with swift-demangle when present);
- `--mode test` (default) parses the KTAP, prints a per-suite table and ends with the line
  `N passed, N failed, N skipped`;
- `--mode bench` collects the BENCH lines and prints them with bench_report's table;
- `--mode run` passes the terminal's stdin to QEMU (type at the kernel) and judges only the
  exit status, a panic and the timeout; KTAP, if any, is summarised and its failures count.

Exit status (when several apply, the first in this list):
    130  interrupted (Ctrl-C)
    4    timeout: QEMU was killed
    3    QEMU could not start, or failed before any serial output
    5    no serial output at all, or (test mode) no KTAP in it
    1    a `not ok`, a missing plan entry, a panic, truncated or malformed KTAP;
         in bench mode no `BENCH begin`/`BENCH end`, or a malformed BENCH line
    3    QEMU's exit status is not among --success-exit (default 0; x86 isa-debug-exit makes
         QEMU exit with (code << 1) | 1), QEMU was killed by a signal, or QEMU printed an
         error (`qemu-system-*: ...`, not a warning) on stderr
    2    usage error
    0    none of the above
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_report  # noqa: E402
import ktap  # noqa: E402

EXIT_OK, EXIT_TESTS, EXIT_USAGE, EXIT_QEMU, EXIT_TIMEOUT, EXIT_NO_OUTPUT = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130

SWIFT_BIN = "/opt/swift/usr/bin"
_QEMU_ERROR = re.compile(r"^qemu(?:-system-[\w.-]+)?: (.*)$")
_KILL_GRACE = 3.0     # seconds between SIGTERM and SIGKILL
_DRAIN_GRACE = 1.0    # seconds to keep reading after QEMU exited (a child may hold the pipe)


# -- running QEMU ------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What running the command produced."""
    stdout: bytes = b""
    stderr: str = ""
    returncode: Optional[int] = None
    timed_out: bool = False
    start_error: Optional[str] = None
    interrupted: bool = False
    elapsed: float = 0.0
    first_ktap: Optional[float] = None   # seconds from QEMU start to the first KTAP line


class _LogWriter:
    """Writes serial output raw; puts stderr lines only at serial line boundaries."""

    def __init__(self, handle):
        self.handle = handle
        self.mid_line = False
        self.deferred: List[bytes] = []
        self.stderr_partial = b""

    def serial(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.mid_line = not chunk.endswith(b"\n")
        if not self.mid_line:
            self.flush_deferred()

    def stderr(self, chunk: bytes) -> None:
        data = self.stderr_partial + chunk
        *lines, self.stderr_partial = data.split(b"\n")
        self.deferred.extend(line + b"\n" for line in lines)
        if not self.mid_line:
            self.flush_deferred()

    def flush_deferred(self) -> None:
        for line in self.deferred:
            self.handle.write(line)
        self.deferred = []
        self.handle.flush()

    def close(self) -> None:
        if self.stderr_partial:
            self.deferred.append(self.stderr_partial + b"\n")
        if self.deferred and self.mid_line:
            self.handle.write(b"\n")
        self.flush_deferred()


def _kill(proc: subprocess.Popen, own_group: bool) -> None:
    """SIGTERM (QEMU then restores the terminal), then SIGKILL; the whole group if it has one."""
    def send(sig):
        try:
            if own_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass
    send(signal.SIGTERM)
    try:
        proc.wait(timeout=_KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass
    if own_group or proc.poll() is None:
        send(signal.SIGKILL)   # also reaps children that ignored SIGTERM
    proc.wait()


def run_command(command: Sequence[str], timeout: float, log_path: str,
                echo: Optional[TextIO] = None, interactive: bool = False) -> Outcome:
    """Runs `command`, echoing stdout to `echo` and stderr to sys.stderr as they arrive.

    stdin is /dev/null unless `interactive`; then it is inherited and QEMU stays in our process
    group (a terminal only lets its foreground group read). Otherwise QEMU gets its own
    session, so a timeout kills it and anything it started.
    """
    outcome = Outcome()
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    start = time.monotonic()
    out_stream = echo.buffer if echo is not None and hasattr(echo, "buffer") else None
    with open(log_path, "wb") as handle:
        log = _LogWriter(handle)
        try:
            proc = subprocess.Popen(list(command),
                                    stdin=None if interactive else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=not interactive)
        except OSError as error:
            outcome.start_error = f"cannot start '{command[0]}': {error.strerror or error}"
            log.stderr(f"ktap_run: {outcome.start_error}\n".encode())
            log.close()
            return outcome
        serial = bytearray()
        errors = bytearray()
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ, "out")
        selector.register(proc.stderr, selectors.EVENT_READ, "err")
        deadline = start + timeout
        exited_at = None
        try:
            while selector.get_map():
                now = time.monotonic()
                if now >= deadline:
                    outcome.timed_out = True
                    break
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > _DRAIN_GRACE:
                    break
                for key, _ in selector.select(timeout=min(0.25, deadline - now)):
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    if key.data == "out":
                        serial += chunk
                        if outcome.first_ktap is None and b"KTAP version 1" in serial:
                            outcome.first_ktap = time.monotonic() - start
                        log.serial(chunk)
                        if echo is not None:
                            if out_stream is not None:
                                out_stream.write(chunk)
                            else:
                                echo.write(chunk.decode("utf-8", errors="replace"))
                            echo.flush()
                    else:
                        errors += chunk
                        log.stderr(chunk)
                        sys.stderr.write(chunk.decode("utf-8", errors="replace"))
                        sys.stderr.flush()
        except KeyboardInterrupt:
            outcome.interrupted = True
        finally:
            if proc.poll() is None:
                if not outcome.timed_out and not outcome.interrupted:
                    # Output closed but QEMU still runs: give it the rest of the timeout.
                    try:
                        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        outcome.timed_out = True
                    except KeyboardInterrupt:
                        outcome.interrupted = True
                if proc.poll() is None:
                    _kill(proc, own_group=not interactive)
            elif not interactive:
                # QEMU is gone; anything it left behind in its session goes too.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            selector.close()
            proc.stdout.close()
            proc.stderr.close()
            log.close()
        outcome.returncode = proc.returncode
        outcome.stdout = bytes(serial)
        outcome.stderr = errors.decode("utf-8", errors="replace")
    outcome.elapsed = time.monotonic() - start
    return outcome


# -- symbolizing -------------------------------------------------------------------------------

def find_tool(name: str, explicit: Optional[str] = None) -> Optional[str]:
    """The toolchain's copy of an LLVM/Swift tool, else the one on PATH."""
    if explicit:
        return explicit if os.path.exists(explicit) or shutil.which(explicit) else None
    bundled = os.path.join(SWIFT_BIN, name)
    if os.access(bundled, os.X_OK):
        return bundled
    return shutil.which(name)


@dataclass
class Frame:
    function: str
    location: str    # file:line[:column], or "??" when unknown


def symbolize(elf: str, addresses: Sequence[int], symbolizer: str,
              demangler: Optional[str] = None) -> Dict[int, List[Frame]]:
    """Maps each address to its frames (innermost inlined frame first) using llvm-symbolizer.

    Raises OSError or subprocess.SubprocessError if the tool cannot run.
    """
    unique = list(dict.fromkeys(addresses))
    if not unique:
        return {}
    text = "".join(f"0x{a:x}\n" for a in unique)
    result = subprocess.run([symbolizer, f"--obj={elf}", "--addresses", "--functions=linkage",
                             "--inlining", "--output-style=LLVM"],
                            input=text, capture_output=True, text=True, timeout=60, check=True)
    frames: Dict[int, List[Frame]] = {}
    for block in result.stdout.strip().split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        try:
            address = int(lines[0], 16)
        except ValueError:
            continue
        pairs = lines[1:]
        frames[address] = [Frame(pairs[i], pairs[i + 1] if i + 1 < len(pairs) else "??")
                           for i in range(0, len(pairs), 2)]
    if demangler:
        names = sorted({f.function for fs in frames.values() for f in fs
                        if f.function.startswith(("$s", "_$s", "$S", "_T", "$e"))})  # $e: Embedded Swift
        if names:
            try:
                out = subprocess.run([demangler, "--simplified"], input="\n".join(names) + "\n",
                                     capture_output=True, text=True, timeout=60, check=True)
                demangled = dict(zip(names, out.stdout.splitlines()))
                for fs in frames.values():
                    for f in fs:
                        f.function = demangled.get(f.function, f.function)
            except (OSError, subprocess.SubprocessError):
                pass
    return frames


def describe_frames(frames: List[Frame]) -> str:
    known = [f for f in frames if f.function not in ("??", "") or not f.location.startswith("??")]
    if not known:
        return "??"
    parts = []
    for index, frame in enumerate(known):
        location = frame.location
        if location.endswith(":0"):
            location = location[:-2]
        parts.append(("(inlined) " if index < len(known) - 1 else "") +
                     f"{frame.function} at {location}")
    return "; ".join(parts)


def print_panics(result: ktap.KtapResult, elf: Optional[str], out: TextIO,
                 symbolizer: Optional[str] = None) -> None:
    """Prints each panic with its symbolized pc and backtrace (or why it is not symbolized)."""
    for panic in result.panics:
        out.write(f"panic at log line {panic.line}: {panic.message}\n")
        if panic.suite:
            out.write(f"  while running self-test {panic.suite}"
                      f"{'.' + panic.test if panic.test else ''}\n")
        if not panic.backtrace:
            out.write("  (no pc or backtrace lines were printed)\n")
            continue
        tool = find_tool("llvm-symbolizer", symbolizer)
        frames: Dict[int, List[Frame]] = {}
        note = None
        if not elf:
            note = "no --elf given: backtrace not symbolized"
        elif not os.path.exists(elf):
            note = f"{elf} does not exist: backtrace not symbolized"
        elif tool is None:
            note = "llvm-symbolizer not found (neither in /opt/swift/usr/bin nor on PATH): " \
                   "backtrace not symbolized"
        else:
            try:
                frames = symbolize(elf, [e.address for e in panic.backtrace], tool,
                                   find_tool("swift-demangle"))
            except (OSError, subprocess.SubprocessError) as error:
                note = f"llvm-symbolizer failed ({error}): backtrace not symbolized"
        if note:
            out.write(f"  {note}\n")
        for entry in panic.backtrace:
            where = describe_frames(frames[entry.address]) if entry.address in frames else ""
            out.write(f"  {entry.label:<6} 0x{entry.address:016x}"
                      f"{'  ' + where if where else ''}\n")


# -- judging -----------------------------------------------------------------------------------

@dataclass
class Verdict:
    code: int
    reasons: List[str] = field(default_factory=list)
    result: Optional[ktap.KtapResult] = None
    bench: Optional[bench_report.BenchRun] = None


def describe_status(status: Optional[int], target: str) -> str:
    if status is None:
        return "no exit status"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = str(-status)
        return f"killed by signal {name}"
    text = f"exit status {status}"
    if target.startswith("x86") and status & 1 and status > 1:
        text += f" (isa-debug-exit wrote 0x{(status - 1) >> 1:x})"
    return text


def qemu_errors(stderr: str, we_killed: bool) -> List[str]:
    """QEMU's error lines (`qemu-system-x86_64: ...`), without warnings or our own kill."""
    errors = []
    for line in stderr.splitlines():
        match = _QEMU_ERROR.match(line.strip())
        if not match:
            continue
        message = match.group(1)
        if message.startswith("warning:") or (we_killed and "terminating on signal" in message):
            continue
        errors.append(line.strip())
    return errors


def evaluate(mode: str, outcome: Outcome, accepted: Sequence[int], target: str,
             timeout: float) -> Verdict:
    """Turns what QEMU did into a verdict: an exit code and every reason for it."""
    text = outcome.stdout.decode("utf-8", errors="replace")
    # (priority, code, reason): the lowest priority number picks the exit code.
    found: List[Tuple[int, int, str]] = []
    we_killed = outcome.timed_out or outcome.interrupted
    if outcome.interrupted:
        found.append((0, EXIT_INTERRUPTED, "interrupted"))
    if outcome.timed_out:
        found.append((1, EXIT_TIMEOUT, f"timeout: no verdict after {timeout:g} s; QEMU killed"))
    if outcome.start_error:
        found.append((2, EXIT_QEMU, f"QEMU error: {outcome.start_error}"))
    errors = qemu_errors(outcome.stderr, we_killed)
    status_ok = outcome.returncode in accepted
    no_output = not text.strip()
    if no_output and not outcome.start_error:
        if errors or (not status_ok and not we_killed):
            found.append((2, EXIT_QEMU, "QEMU failed before any serial output "
                                        f"({describe_status(outcome.returncode, target)})"))
        else:
            found.append((3, EXIT_NO_OUTPUT, "no output on the serial port"))

    verdict = Verdict(code=EXIT_OK)
    result = ktap.parse(text)
    verdict.result = result
    if mode == "bench":
        verdict.bench = bench_report.parse_bench(text.splitlines(), arch=target)
        if not no_output:
            for problem in verdict.bench.problems:
                found.append((4, EXIT_TESTS, f"bench: {problem}"))
        for problem in result.problems_of(ktap.PANIC):
            found.append((4, EXIT_TESTS, f"{problem}"))
    elif not no_output:
        if not result.found:
            if mode == "test":
                found.append((3, EXIT_NO_OUTPUT, "no KTAP in the output"))
            for problem in result.problems_of(ktap.PANIC):
                found.append((4, EXIT_TESTS, f"{problem}"))
        else:
            for problem in result.problems:
                found.append((4, EXIT_TESTS, f"{problem}"))

    if not outcome.start_error and not we_killed and not status_ok:
        found.append((5, EXIT_QEMU, f"QEMU {describe_status(outcome.returncode, target)} is "
                                    f"not an accepted one ({', '.join(map(str, accepted))})"))
    for line in errors:
        found.append((5, EXIT_QEMU, f"QEMU error: {line}"))
    if found:
        found.sort(key=lambda item: item[0])
        verdict.code = found[0][1]
        verdict.reasons = [reason for _, _, reason in found]
    return verdict


# -- reporting ---------------------------------------------------------------------------------

def suite_table(result: ktap.KtapResult) -> str:
    header = ["suite", "pass", "fail", "skip", "missing", "result"]
    rows = []
    for suite in result.suites:
        counts = result.suite_counts(suite)
        status = {"pass": "ok", "fail": "FAILED", "skip": "skipped", "crash": "CRASHED",
                  "missing": "MISSING"}[suite.status]
        if suite.status == ktap.PASS and not suite.has_subtests:
            status = "ok"
        rows.append([suite.label, str(counts.passed), str(counts.failed), str(counts.skipped),
                     str(counts.missing), status])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def fmt(row):
        return "  ".join(c.ljust(widths[i]) if i in (0, 5) else c.rjust(widths[i])
                         for i, c in enumerate(row)).rstrip()
    return "\n".join([fmt(header)] + [fmt(r) for r in rows])


def print_failures(result: ktap.KtapResult, out: TextIO) -> None:
    for path, test in result.leaves():
        if test.status not in (ktap.FAIL, ktap.CRASH):
            continue
        name = ".".join(path)
        what = "crashed" if test.status == ktap.CRASH else "failed"
        extra = f" ({test.reason})" if test.reason else ""
        where = f" [log line {test.line}]" if test.line else ""
        out.write(f"  {what}: {name}{extra}{where}\n")
        for line in test.diagnostics:
            out.write(f"      # {line}\n")


def report(mode: str, verdict: Verdict, args, out: TextIO,
           outcome: Optional[Outcome] = None) -> None:
    result = verdict.result
    out.write(f"\n==== {args.target}: {mode} summary ====\n")
    if result is not None and result.panics:
        print_panics(result, args.elf, out, args.symbolizer)
    if mode == "bench" and verdict.bench is not None:
        if verdict.bench.entries:
            out.write(bench_report.format_table(verdict.bench, args.baseline) + "\n")
        else:
            out.write("no BENCH measurements\n")
    elif result is not None and result.found:
        out.write(suite_table(result) + "\n")
        if any(t.status in (ktap.FAIL, ktap.CRASH) for _, t in result.leaves()):
            out.write("failures:\n")
            print_failures(result, out)
        missing = result.counts().missing
        if missing:
            out.write(f"{missing} planned test(s) or suite(s) never reported\n")
    out.write(f"log: {args.log}\n")
    if outcome is not None:
        boot = f"{outcome.first_ktap:.2f} s" if outcome.first_ktap is not None else "never"
        out.write(f"timing: first KTAP line after {boot}, whole run {outcome.elapsed:.2f} s "
                  f"(QEMU TCG wall time)\n")
    if verdict.code == EXIT_OK:
        out.write(f"PASS: {args.target}\n")
    else:
        out.write(f"FAIL: {args.target}:\n")
        for reason in verdict.reasons:
            out.write(f"  - {reason}\n")
    if mode != "bench":
        counts = result.counts() if result is not None else ktap.Counts()
        out.write(counts.summary_line() + "\n")
    out.flush()


# -- command line ------------------------------------------------------------------------------

def parse_args(argv: Sequence[str]):
    """Options before `--`, the QEMU command after it. Exits (argparse) on a usage error."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(
        prog="ktap_run.py",
        usage="%(prog)s --target ARCH [--elf ELF] [--log LOG] [--timeout S] "
              "[--success-exit N]... [--mode test|bench|run] -- QEMU ARGS...",
        description="Boot a kernel in QEMU, log the serial port, judge the KTAP or BENCH "
                    "output.", epilog="Exit status" + __doc__.split("Exit status", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="x86_64, aarch64, ... (names the log)")
    parser.add_argument("--elf", help="kernel ELF with symbols, for the backtrace")
    parser.add_argument("--log", help="raw serial log (default build/ktap/TARGET.log, "
                                      "bench-TARGET.log in bench mode)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before QEMU is killed (default 900)")
    parser.add_argument("--success-exit", type=int, action="append", dest="success_exit",
                        metavar="N", help="an accepted QEMU exit status (repeatable; default 0)")
    parser.add_argument("--mode", choices=("test", "bench", "run"), default="test")
    parser.add_argument("--baseline", help="bench mode: the entry ratios are relative to")
    parser.add_argument("--symbolizer", help="llvm-symbolizer to use (default: the Swift "
                                             "toolchain's, else PATH)")
    parser.add_argument("--quiet", action="store_true",
                        help="do not echo the serial output live")
    args = parser.parse_args(options)
    if not command:
        parser.error("no QEMU command after '--'")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    args.command = command
    if args.success_exit is None:
        args.success_exit = [0]
    if args.log is None:
        name = f"bench-{args.target}.log" if args.mode == "bench" else f"{args.target}.log"
        args.log = os.path.join("build", "ktap", name)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:   # argparse: --help (0) or a usage error (2, message printed)
        return EXIT_OK if exit_.code in (None, 0) else EXIT_USAGE
    interactive = args.mode == "run"
    outcome = run_command(args.command, args.timeout, args.log,
                          echo=None if args.quiet else sys.stdout, interactive=interactive)
    verdict = evaluate(args.mode, outcome, args.success_exit, args.target, args.timeout)
    report(args.mode, verdict, args, sys.stdout, outcome)
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())
