#!/usr/bin/env python3
"""One fuzz target's figures into the generated table of docs/reliability.md.

  fuzz_table.py --target session_fuzz --log build/fuzz/session_fuzz.log \\
      --cov-log build/fuzz/session_fuzz.asan.log --corpus fuzz/corpus/session_fuzz \\
      --crashes 0 --seconds 61 --command "make fuzz-run-session_fuzz FUZZ_RUNS=10000000"

Reads the run's libFuzzer log (-print_final_stats=1: executions; exec/s is
executions over --seconds when given, measured by the caller on a monotonic clock), the
coverage of the merged corpus (a -runs=0 pass over it: its INITED line; without
--cov-log, or when that has none, the run's last cov:/ft: figures), and counts the
corpus's files and bytes. Prints one summary line, and replaces that target's row
(only that row) in the table between the fuzz-table markers of the document; the
other rows stay as they are, so one target can be run on its own. Rows are kept
in the order of --order when given. Exit status 0, or 2 when the document has no
markers or the log no figures (nothing is written then).
"""
import argparse
import datetime
import fcntl
import os
import re
import subprocess
import sys

BEGIN = "<!-- fuzz-table:begin -->"
END = "<!-- fuzz-table:end -->"
HEADER = ("| target | executions | exec/s | time (s) | corpus files | corpus bytes "
          "| cov (edges) | ft (features) | crashes | date (UTC) | rev | command |")
RULE = "|" + "|".join("---" for _ in range(HEADER.count("|") - 1)) + "|"


def stat(text, name):
    m = re.findall(r"^stat::" + name + r":\s*(\d+)", text, re.M)
    return int(m[-1]) if m else None


def coverage(text, prefer_inited):
    """(cov, ft) from a libFuzzer log: the INITED line, or the last one that has them."""
    lines = re.findall(r"^#\d+\s+(\w+)\s+cov: (\d+) ft: (\d+)", text, re.M)
    if prefer_inited:
        for kind, cov, ft in lines:
            if kind == "INITED":
                return int(cov), int(ft)
    if lines:
        return int(lines[-1][1]), int(lines[-1][2])
    return None, None


def corpus_size(path):
    files = total = 0
    for root, _, names in os.walk(path):
        for n in names:
            files += 1
            total += os.path.getsize(os.path.join(root, n))
    return files, total


def git_rev(root):
    """The commit of the code under test, with a + when code (not the corpus or
    this document) differs from it."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":!docs/reliability.md", ":!fuzz/corpus"],
            cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+" if dirty else "")


def update(doc_path, target, row, order):
    with open(doc_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two targets run with make -j2
        with open(doc_path, encoding="utf-8") as f:
            doc = f.read()
        b, e = doc.find(BEGIN), doc.find(END)
        if b < 0 or e < b:
            print(f"fuzz_table: {doc_path} has no {BEGIN} ... {END} section", file=sys.stderr)
            return False
        rows = {}
        for line in doc[b + len(BEGIN):e].splitlines():
            m = re.match(r"^\| ([A-Za-z0-9_]+) \|", line)
            if m and line != HEADER and m.group(1) != "target":
                rows[m.group(1)] = line
        rows[target] = row
        names = [t for t in order if t in rows] + sorted(t for t in rows if t not in order)
        table = "\n".join([HEADER, RULE] + [rows[t] for t in names])
        new = doc[:b + len(BEGIN)] + "\n" + table + "\n" + doc[e:]
        tmp = doc_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, doc_path)
    try:
        os.unlink(doc_path + ".lock")
    except OSError:
        pass
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", default="docs/reliability.md")
    ap.add_argument("--target", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cov-log")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--crashes", type=int, default=0)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--command", required=True)
    ap.add_argument("--order", default="", help="space-separated target names")
    ap.add_argument("--summary", help="also write the summary line to this file")
    a = ap.parse_args()

    with open(a.log, encoding="utf-8", errors="replace") as f:
        log = f.read()
    runs = stat(log, "number_of_executed_units")
    # libFuzzer's own average divides by wall-clock time, which a clock set
    # forwards or back distorts; --seconds is measured on a monotonic clock.
    rate = stat(log, "average_exec_per_sec")
    if runs is not None and a.seconds:
        rate = runs // a.seconds
    cov, ft = None, None
    if a.cov_log and os.path.exists(a.cov_log):
        with open(a.cov_log, encoding="utf-8", errors="replace") as f:
            cov, ft = coverage(f.read(), prefer_inited=True)
    if cov is None:
        cov, ft = coverage(log, prefer_inited=False)
    if runs is None or cov is None:
        print(f"fuzz_table: {a.log}: no executions or coverage figures", file=sys.stderr)
        return 2
    files, size = corpus_size(a.corpus)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    secs = "" if a.seconds is None else str(a.seconds)
    row = (f"| {a.target} | {runs} | {rate if rate is not None else ''} | {secs} | {files} "
           f"| {size} | {cov} | {ft} | {a.crashes} | {now} | {git_rev(root)} | `{a.command}` |")
    summary = (f"  {a.target:<20} {runs:>10} runs {rate if rate is not None else '?':>7} exec/s "
               f"cov {cov:>5} ft {ft:>6}  corpus {files:>5} files {size:>8} bytes"
               f"  crashes {a.crashes}")
    print(summary)
    if a.summary:
        with open(a.summary, "w", encoding="utf-8") as f:
            f.write(summary + "\n")
    return 0 if update(a.doc, a.target, row, a.order.split()) else 2


if __name__ == "__main__":
    sys.exit(main())
