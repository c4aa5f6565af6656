#!/usr/bin/env python3
"""make check-ids: docs/reliability.md defines every test id the project cites.

  - every id (F-18, FI-06, ...) written in code, tests, scripts or docs, and every id a
    unit test name carries (F18_...), has a row in docs/reliability.md;
  - every test a row names exists: `file.cc: Suite.Name` is a TEST/TEST_F in that file
    under tests/unit/, `file.py::function` a function in tests/integration/.
Exit status 0 when both hold, 1 otherwise (one line per problem).
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = "docs/reliability.md"
FAMILIES = r"(?:FI|FZ|F|L|T|R|P|S)"
# One or two digits: a one-digit id counts too (P-256 and SHA-1 do not: three
# digits, or no family before the hyphen).
CITED = re.compile(r"\b(" + FAMILIES + r")-([0-9]{1,2})\b")
IN_NAME = re.compile(r"\b(" + FAMILIES + r")([0-9]{2})_")
ROW = re.compile(r"^\| (" + FAMILIES + r"-[0-9]{2}) \|", re.M)
# `make faults` (tests/faults/run.py) writes its results table between these
# two lines of the document; its rows define nothing, they may only name ids
# the tables above define.
GENERATED_BEGIN = "<!-- faults-table:begin -->"
GENERATED_END = "<!-- faults-table:end -->"
UNIT_TEST = re.compile(r"([a-z_]+_test\.cc): (.*)")
INTEG_TEST = re.compile(r"(test_[a-z_0-9]+\.py)::(\w+)")


def split_generated(doc):
    """(the document without the generated section, the section's text)."""
    b, e = doc.find(GENERATED_BEGIN), doc.find(GENERATED_END)
    if b < 0 or e < b:
        return doc, ""
    return doc[:b] + doc[e + len(GENERATED_END):], doc[b + len(GENERATED_BEGIN):e]


def rows(doc):
    """Each row that defines an id: (id, [its cells]), the generated section left out."""
    out = []
    for line in split_generated(doc)[0].splitlines():
        m = ROW.match(line)
        if m:
            out.append((m.group(1), [c.strip() for c in line.strip().strip("|").split("|")]))
    return out


def named_tests(cell):
    """The tests a row's last cell names: ([(unit file, Suite, Name)], [(file.py, function)])."""
    unit, integ = [], []
    for part in re.split(r";", cell):
        part = part.strip()
        u = UNIT_TEST.search(part)
        if u:
            unit += [(u.group(1), s, n) for s, n in re.findall(r"(\w+)\.(\w+)", u.group(2))]
        integ += INTEG_TEST.findall(part)
    return unit, integ


def tracked(*patterns):
    out = subprocess.run(["git", "ls-files", "--", *patterns], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.split() if os.path.isfile(os.path.join(ROOT, p))]


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
        return f.read()


def main():
    doc = read(DOC)
    defined = set(ROW.findall(split_generated(doc)[0]))
    problems = []
    # The generated table names only ids a row defines.
    for i in sorted(set(re.findall(r"^\| (" + FAMILIES + r"-[0-9]{2}) \|",
                                   split_generated(doc)[1], re.M)) - defined):
        problems.append(f"{DOC}: the generated faults table names {i}, which no row defines")
    files = tracked("*.cc", "*.h", "*.py", "*.sh", "*.mk", "Makefile", "*.md", "*.yaml")
    for rel in files:
        if rel == DOC or rel.startswith("fuzz/corpus/"):
            continue
        text = read(rel)
        ids = {f"{a}-{b}" for a, b in CITED.findall(text)}
        if rel.startswith("tests/"):
            ids |= {f"{a}-{b}" for a, b in IN_NAME.findall(text)}
        for i in sorted(ids - defined):
            problems.append(f"{rel}: cites {i}, which {DOC} does not define")
    # The tests each row names must exist.
    # Two unit files may share a name in different directories (tests/unit/tls/ and
    # tests/unit/beacon/ both have a pairing_test.cc): a row's name matches either.
    unit = {}
    for p in tracked("tests/unit/*.cc"):
        unit[os.path.basename(p)] = unit.get(os.path.basename(p), "") + read(p)
    integ = {os.path.basename(p): read(p) for p in tracked("tests/integration/*.py")}
    for rid, cells in rows(doc):
        units, integs = named_tests(cells[-1])
        for f, suite, name in units:
            body = unit.get(f)
            if body is None or not re.search(
                    r"TEST(?:_F|_P)?\(\s*" + suite + r",\s*" + name + r"\)", body):
                problems.append(f"{DOC}: {rid} names {f}: {suite}.{name}, which does not exist")
        for f, fn in integs:
            body = integ.get(f)
            if body is None or not re.search(r"def " + fn + r"\(", body):
                problems.append(f"{DOC}: {rid} names {f}::{fn}, which does not exist")
    for p in problems:
        print(f"check-ids: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-ids: {len(defined)} ids defined in {DOC}; every cited id is among them "
          f"and every test a row names exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
