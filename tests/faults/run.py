#!/usr/bin/env python3
"""make faults: every fault and bad input docs/reliability.md defines, run N times, and
the results table in that document rewritten.

For each id (a row of the document's tables, parsed by tests/check_ids.py) it runs the
tests the row's last cell names, FAULT_RUNS times:

  - GoogleTest `file.cc: Suite.Name`: the unit binary of the file's folder
    (build/unit/<folder>-tests) with --gtest_filter and --gtest_repeat, once per id;
    iteration k is run k;
  - pytest `file.py::function` (or a bare `file.py`: the whole file): one pytest process
    per run with --junitxml, from which it takes each test's outcome and the figures the
    tests record with record_property: detect_s, recover_s, lost_bytes, corrupted_bytes.

A run of an id passes when every test of it passed in that run (a test that skipped
counts as neither). Ids whose fault involves the broker-bridge link (the document's
"Link faults" line) run their integration tests a second time with CT_LINK_RTT_MS set
(40 by default), the delay the WAN emulator adds; each such id gets a row per RTT.
A failing run does not stop anything: the row shows passed < runs and a footnote gives
the first failure's reason.

With no id filter the table between the document's faults-table markers is replaced
(and build/faults/table.md written); with FAULT_IDS (a comma-separated list of id
prefixes, `FI-,T-15`) only build/faults/table.md is written, so that a partial run never
passes for the whole table.
"""
import argparse
import ast
import concurrent.futures
import datetime
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import check_ids  # noqa: E402  the one parser of docs/reliability.md

DOC = ROOT / check_ids.DOC
PROPS = ("detect_s", "recover_s", "lost_bytes", "corrupted_bytes")
# "Link faults (...): F-18, FI-04, ..." up to the next blank line.
LINK_LINE = re.compile(r"^Link faults[^:\n]*:(.*?)(?:\n[ \t]*\n|\Z)", re.M | re.S)
BARE_FILE = re.compile(r"(?<![\w/])(test_[a-z_0-9]+\.py)\b(?!::)")


# ---------------------------------------------------------------- what to run
class Fault:
    def __init__(self, fid, cells):
        self.id = fid
        self.what = cells[1] if len(cells) > 1 else ""
        self.cell = cells[-1]
        self.unit, integ = check_ids.named_tests(self.cell)
        # pytest node ids, in the order the row names them, without repeats
        nodes = [f"tests/integration/{f}::{fn}" for f, fn in integ]
        nodes += [f"tests/integration/{f}" for f in BARE_FILE.findall(self.cell)]
        self.integ = list(dict.fromkeys(nodes))
        self.untested = "not yet tested" in self.cell
        self.link = False

    def tests_text(self):
        by_file = {}
        for f, s, n in self.unit:
            by_file.setdefault(f, []).append(f"{s}.{n}")
        parts = [f"{f}: {len(v)} test{'s' if len(v) > 1 else ''}" if len(v) > 3
                 else f"{f}: {', '.join(v)}" for f, v in by_file.items()]
        parts += [n.replace("tests/integration/", "") for n in self.integ]
        return "; ".join(parts) if parts else "-"


def load_faults(doc_text):
    faults = [Fault(fid, cells) for fid, cells in check_ids.rows(doc_text)]
    m = LINK_LINE.search(check_ids.split_generated(doc_text)[0])
    link = set(re.findall(r"\b(?:FI|FZ|F|L|T|R|P|S)-[0-9]{2}\b", m.group(1))) if m else set()
    known = {f.id for f in faults}
    for f in faults:
        f.link = f.id in link
    return faults, sorted(link - known)


def select(faults, spec):
    prefixes = [p.strip() for p in (spec or "").split(",") if p.strip()]
    if not prefixes:
        return faults
    return [f for f in faults if any(f.id == p or f.id.startswith(p) for p in prefixes)]


def unit_binary(build, test_file, suite, name):
    """The unit binary that holds `suite.name` of `test_file` (two folders may
    each have a file of that name)."""
    rx = re.compile(r"TEST(?:_F|_P)?\(\s*" + suite + r",\s*" + name + r"\)")
    for p in sorted((ROOT / "tests/unit").glob(f"*/{test_file}")):
        if rx.search(p.read_text(errors="replace")):
            return build / "unit" / f"{p.parent.name}-tests"
    return None


# ---------------------------------------------------------------- running
class Outcome:
    """One test in one run: 'pass', 'fail' or 'skip', the reason, the figures."""

    def __init__(self, name, status, reason="", props=None):
        self.name, self.status, self.reason = name, status, reason
        self.props = props or {}


def _run(argv, env, timeout, log):
    """Runs argv in its own process group, output to `log`; kills the group at
    `timeout`. Returns (exit status or None on timeout, the output)."""
    with open(log, "wb") as out:
        p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)
            rc = None
    return rc, Path(log).read_text(errors="replace")


GTEST_RESULT = re.compile(r"^\[\s+(OK|FAILED|SKIPPED)\s+\] (\S+) \(\d+ ms\)$", re.M)


def _matches(full, suite, name):
    """A result line's name is this test (or an instance of a TEST_P of it)."""
    t = f"{suite}.{name}"
    return full == t or full.startswith(t + "/") or full.endswith("/" + t) or f"/{t}/" in full


def parse_gtest(text, tests, runs, label, why):
    """Per iteration, the outcomes of `tests` ([(file, Suite, Name)]) in the output of
    one binary run with --gtest_repeat=runs. A test (or an instance of it) without a
    result in an iteration failed there with `why` (the binary crashed or timed out)."""
    per_run = [[] for _ in range(runs)]
    seen = {}  # full name -> iterations with a result
    for m in GTEST_RESULT.finditer(text):
        status, full = m.group(1), m.group(2)
        if not any(_matches(full, s, n) for _, s, n in tests):
            continue
        k = seen.get(full, 0)
        seen[full] = k + 1
        if k >= runs:
            continue
        reason = ""
        if status == "FAILED":
            # This iteration's failure message: the lines after its RUN line.
            start = text.rfind(f"[ RUN      ] {full}", 0, m.start())
            body = text[start:m.start()].splitlines()[1:4]
            reason = " ".join(x.strip() for x in body if x.strip())
        per_run[k].append(Outcome(f"{label}: {full}",
                                  {"OK": "pass", "FAILED": "fail"}.get(status, "skip"), reason))
    for _, s, n in tests:
        fulls = [f for f in seen if _matches(f, s, n)] or [f"{s}.{n}"]
        for full in fulls:
            for k in range(seen.get(full, 0), runs):
                per_run[k].append(Outcome(f"{label}: {full}", "fail", why))
    return per_run


def run_unit(fault, runs, build, out_dir, timeout):
    """Per run (iteration), the outcomes of the id's unit tests."""
    per_run = [[] for _ in range(runs)]
    groups = {}
    for f, s, n in fault.unit:
        b = unit_binary(build, f, s, n)
        if b is None:
            for r in per_run:
                r.append(Outcome(f"{f}: {s}.{n}", "fail", "no such test under tests/unit"))
            continue
        groups.setdefault(b, []).append((f, s, n))
    for binary, tests in groups.items():
        if not binary.exists():
            for r in per_run:
                r.append(Outcome(str(binary), "fail", f"{binary} is not built (make unit-tests)"))
            continue
        pattern = ":".join(f"{s}.{n}:*/{s}.{n}/*:{s}.{n}/*:*/{s}.{n}" for _, s, n in tests)
        log = out_dir / f"{fault.id}-{binary.name}.log"
        rc, text = _run([str(binary), f"--gtest_filter={pattern}", f"--gtest_repeat={runs}",
                         "--gtest_color=no"], None, timeout * runs, log)
        why = ("timed out" if rc is None else
               f"did not run to its end in {binary.name} (exit {rc}); see {log.relative_to(ROOT)}")
        for k, outcomes in enumerate(parse_gtest(text, tests, runs, binary.name, why)):
            per_run[k] += outcomes
        if rc is None:
            for r in per_run:
                r.append(Outcome(binary.name, "fail", f"timed out after {timeout * runs} s"))
    return per_run


def _num(v):
    try:
        return float(v)
    except ValueError:
        return None


def parse_junit(path):
    outcomes = []
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError):
        return None
    for tc in tree.iter("testcase"):
        name = f"{tc.get('classname', '').rsplit('.', 1)[-1]}.py::{tc.get('name')}"
        props = {}
        for p in tc.iter("property"):
            if p.get("name") in PROPS and _num(p.get("value", "")) is not None:
                props.setdefault(p.get("name"), []).append(_num(p.get("value")))
        status, reason = "pass", ""
        for kind in ("failure", "error"):
            e = tc.find(kind)
            if e is not None:
                status = "fail"
                reason = e.get("message") or ((e.text or "").strip().splitlines() or [""])[-1]
                break
        else:
            e = tc.find("skipped")
            if e is not None:
                status, reason = "skip", e.get("message") or ""
        outcomes.append(Outcome(name, status, reason, props))
    return outcomes


def run_integration(fault, rtt, k, build, out_dir, timeout):
    env = dict(os.environ)
    env["CT_BUILD"] = str(build)
    env.pop("CT_LINK_RTT_MS", None)
    if rtt:
        env["CT_LINK_RTT_MS"] = str(rtt)
    xml = out_dir / f"{fault.id}-rtt{rtt}-run{k + 1}.xml"
    log = out_dir / f"{fault.id}-rtt{rtt}-run{k + 1}.log"
    xml.unlink(missing_ok=True)
    # Each run's daemon logs stay under build/faults/tmp/ for a footnote's reader.
    tmp = out_dir / "tmp" / f"{fault.id}-rtt{rtt}-run{k + 1}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    rc, text = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     "-o", "junit_family=xunit1", f"--junitxml={xml}", f"--basetemp={tmp}",
                     *fault.integ],
                    env, timeout, log)
    got = parse_junit(xml)
    if rc is None:
        return (got or []) + [Outcome("pytest", "fail", f"timed out after {timeout} s")]
    if got is None or (not got and rc not in (0,)):
        tail = " ".join(text.strip().splitlines()[-2:])
        return [Outcome("pytest", "fail", f"pytest exit {rc}: {tail}")]
    return got


def exclusive_tests(conftest=ROOT / "tests/integration/conftest.py"):
    """The node-id parts the suite runs alone (conftest.py SERIAL: tests that
    measure the machine), plus the clock jump, which moves every test's clock."""
    tree = ast.parse(conftest.read_text())
    serial = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "SERIAL" for t in node.targets):
            serial = ast.literal_eval(node.value)
    return tuple(serial) + ("test_clock_jump.py",)


def is_exclusive(fault, exclusive):
    """A node id naming an exclusive test, or a whole file holding one."""
    def hits(node, x):
        name = node.rsplit("/", 1)[-1]
        return x in node or ("::" not in name and x.split("::")[0] == name)
    return any(hits(n, x) for n in fault.integ for x in exclusive)


def run_all(rows, args, build, out_dir, started):
    """Every row's runs: first those of rows whose tests the suite runs alone
    (exclusive_tests), one at a time, then the rest up to `args.jobs` pytest
    processes at once. Results are added to each row in run order, whatever
    order they finish in."""
    exclusive = exclusive_tests()
    units = {i: (run_unit(r.fault, args.runs, build, out_dir, args.timeout)
                 if r.rtt == 0 and r.fault.unit else [[] for _ in range(args.runs)])
             for i, r in enumerate(rows) if r.fault.unit or r.fault.integ}
    tasks = [(i, k) for i, r in enumerate(rows) if r.fault.integ for k in range(args.runs)]
    alone = [t for t in tasks if is_exclusive(rows[t[0]].fault, exclusive)]
    lone = set(alone)
    side_by_side = [t for t in tasks if t not in lone]
    results, done = {}, {i: 0 for i in units}

    def finished(i, k, outcomes):
        results[(i, k)] = outcomes
        done[i] += 1
        row = rows[i]
        failed = any(o.status == "fail" for o in outcomes)
        print(f"faults: {row.fault.id} rtt {row.rtt} ms run {k + 1}/{args.runs}: "
              f"{'FAIL' if failed else 'done'} ({done[i]} of {args.runs} of this row; "
              f"{time.monotonic() - started:.0f} s so far)", flush=True)

    def one(t):
        i, k = t
        return run_integration(rows[i].fault, rows[i].rtt, k, build, out_dir, args.timeout)

    for t in alone:
        finished(*t, one(t))
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(one, t): t for t in side_by_side}
        for fut in concurrent.futures.as_completed(futs):
            finished(*futs[fut], fut.result())
    for i, unit in units.items():
        row = rows[i]
        for k in range(args.runs):
            result = row.add(k, list(unit[k]) + results.get((i, k), []))
            if not row.fault.integ:
                print(f"faults: {row.fault.id} rtt {row.rtt} ms run {k + 1}/{args.runs}: "
                      f"{result}", flush=True)


# ---------------------------------------------------------------- results
class Row:
    def __init__(self, fault, rtt):
        self.fault, self.rtt = fault, rtt
        self.runs = self.passed = self.skipped = 0
        self.samples = {p: [] for p in PROPS}
        self.first_failure = None

    def add(self, k, outcomes):
        self.runs += 1
        failed = [o for o in outcomes if o.status == "fail"]
        ran = [o for o in outcomes if o.status == "pass"]
        for o in outcomes:
            for p, vs in o.props.items():
                self.samples[p] += vs
        if failed:
            if self.first_failure is None:
                o = failed[0]
                self.first_failure = f"run {k + 1}: {o.name}: {o.reason}"
            return "FAIL"
        if ran:
            self.passed += 1
            return "pass"
        self.skipped += 1
        if self.first_failure is None and outcomes:
            self.first_failure = f"run {k + 1}: every test skipped: {outcomes[0].reason}"
        return "skipped"


def pct(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def fmt_time(vs):
    return "-" if not vs else f"{pct(vs, 50):.2f} / {pct(vs, 99):.2f}"


def fmt_bytes(row):
    lost, bad = row.samples["lost_bytes"], row.samples["corrupted_bytes"]
    if not lost and not bad:
        return "-"
    return f"{int(sum(lost)) if lost else '-'} / {int(sum(bad)) if bad else '-'}"


def short(text, n=90):
    text = re.sub(r"\s+", " ", text).replace("|", "\\|")
    if len(text) <= n:
        return text
    return text[:n].rsplit(" ", 1)[0] + " …"


def cell(text):
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3]
    return (f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), kernel {platform.release()}, "
            f"load average at the end {' '.join(load)}")


def git_rev():
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return rev + (" with uncommitted changes" if dirty else "")


def render(rows, args, started, emulated, rev="-"):
    ids = {r.fault.id for r in rows}
    untested = {r.fault.id for r in rows if not r.fault.unit and not r.fault.integ}
    runs = sum(r.runs for r in rows)
    passed = sum(r.passed for r in rows)
    notes = []
    lines = ["| id | what it does | RTT ms | runs | passed | detect s p50 / p99 | "
             "recover s p50 / p99 | bytes lost / corrupted | tests |",
             "|----|--------------|--------|------|--------|--------------------|"
             "---------------------|------------------------|-------|"]
    for r in rows:
        f = r.fault
        rtt = str(r.rtt) if (r.rtt == 0 or emulated) else f"{r.rtt} (asked)"
        if f.id in untested:
            lines.append(f"| {f.id} | {short(f.what)} | {rtt} | - | not yet tested | - | - | - | "
                         f"{short(f.cell, 120)} |")
            continue
        passed_cell = str(r.passed)
        if r.first_failure:
            notes.append(f"{f.id} at {r.rtt} ms RTT: {r.runs - r.passed - r.skipped} of "
                         f"{r.runs} runs failed" + (f", {r.skipped} skipped" if r.skipped else "")
                         + f"; first: {cell(r.first_failure)[:400]} (logs: build/faults/)")
            passed_cell += f" [{len(notes)}]"
        tests = f.tests_text() if r.rtt == 0 else "; ".join(
            n.replace("tests/integration/", "") for n in f.integ)
        if f.untested:
            tests += " (and a part not yet tested)"
        lines.append(f"| {f.id} | {short(f.what)} | {rtt} | {r.runs} | {passed_cell} | "
                     f"{fmt_time(r.samples['detect_s'])} | {fmt_time(r.samples['recover_s'])} | "
                     f"{fmt_bytes(r)} | {cell(tests)} |")
    finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    took = (time.monotonic() - started) / 60
    jobs = getattr(args, "jobs", 1)
    cmd = "make faults" + (f" FAULT_RUNS={args.runs}") + (f" FAULT_IDS={args.ids}" if args.ids
                                                            else "") + (
        f" FAULT_JOBS={jobs}" if jobs > 1 else "")
    head = (f"**{len(ids)} ids** ({len(untested)} not yet tested), **{runs} runs, {passed} "
            f"passed**, each id's tests {args.runs} time{'s' if args.runs > 1 else ''} "
            f"(FAULT_RUNS={args.runs}); finished {finished} after {took:.0f} min on {machine()}; "
            f"git {rev}; command `{cmd}`." + (
                f" {jobs} pytest runs at a time (tests the suite runs alone ran alone), so "
                f"detection and recovery times include the others' load." if jobs > 1 else "")
            + (f" {args.note}" if args.note else ""))
    out = [head, ""] + lines
    if not emulated and any(r.rtt for r in rows):
        out += ["", f"RTT \"{args.rtt} (asked)\": the runner set CT_LINK_RTT_MS={args.rtt}, but "
                "this tree's integration tests have no WAN emulator that honours it, so those "
                "runs went over loopback without added delay."]
    if notes:
        out += [""] + [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(out) + "\n"


def write_doc(table, doc=DOC):
    """Replaces what is between the document's two faults-table markers, nothing else."""
    text = doc.read_text()
    b, e = text.find(check_ids.GENERATED_BEGIN), text.find(check_ids.GENERATED_END)
    if b < 0 or e < b:
        raise SystemExit(f"{doc}: no {check_ids.GENERATED_BEGIN} ... {check_ids.GENERATED_END}")
    doc.write_text(text[:b + len(check_ids.GENERATED_BEGIN)] + "\n" + table + text[e:])


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=int(os.environ.get("FAULT_RUNS") or 20))
    ap.add_argument("--ids", default=os.environ.get("FAULT_IDS", ""),
                    help="comma-separated id prefixes (FI-,T-15); default: every id")
    ap.add_argument("--build", default=os.environ.get("CT_BUILD", str(ROOT / "build")))
    ap.add_argument("--rtt", type=int, default=40, help="the second RTT of link faults, ms")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("FAULT_JOBS") or 1),
                    help="pytest runs at once (tests the suite runs alone still run alone); "
                         "detection and recovery figures then include the load of the others")
    ap.add_argument("--timeout", type=int, default=1200,
                    help="seconds one pytest run (or one unit iteration) may take")
    ap.add_argument("--note", default=os.environ.get("FAULT_NOTE", ""),
                    help="a sentence for the summary line (the conditions of the run)")
    ap.add_argument("--list", action="store_true", help="print what would run, run nothing")
    args = ap.parse_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    build = Path(args.build).resolve()
    faults, unknown_link = load_faults(DOC.read_text())
    chosen = select(faults, args.ids)
    if not chosen:
        raise SystemExit(f"no id matches {args.ids!r}")
    for i in unknown_link:
        print(f"faults: the Link faults line names {i}, which no row defines: ignored")
    # The emulator hook is another part of the suite; without it the delay is only asked for.
    emulated = any("CT_LINK_RTT_MS" in p.read_text(errors="replace")
                   for p in (ROOT / "tests/integration").glob("*.py"))
    plan = []
    for f in chosen:
        plan.append((f, 0))
        if f.link and f.integ:
            plan.append((f, args.rtt))
    if args.list:
        for f, rtt in plan:
            kind = "not yet tested" if not f.unit and not f.integ else (
                f"{len(f.unit)} unit, {len(f.integ)} pytest")
            print(f"{f.id:6} rtt {rtt:3} ms  {kind}")
        return 0
    out_dir = ROOT / "build" / "faults"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rev = git_rev()  # what was tested: the tree as the run started
    rows = [Row(f, rtt) for f, rtt in plan]
    for row in rows:
        if not row.fault.unit and not row.fault.integ:
            print(f"faults: {row.fault.id}: not yet tested", flush=True)
    run_all(rows, args, build, out_dir, started)
    table = render(rows, args, started, emulated, rev)
    (out_dir / "table.md").write_text(table)
    print(table)
    if args.ids:
        print(f"faults: a subset ({args.ids}): {check_ids.DOC} left as it was; "
              f"the table is in {(out_dir / 'table.md').relative_to(ROOT)}")
    else:
        write_doc(table)
        print(f"faults: {check_ids.DOC} rewritten between the faults-table markers")
    return 0 if all(r.passed + r.skipped == r.runs for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
