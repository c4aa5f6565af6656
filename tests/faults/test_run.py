"""The faults runner's own parsing and table (pytest; `make check-ids` runs it): each
test feeds it what GoogleTest, pytest's junit XML and docs/reliability.md really look
like and checks what it makes of them."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

GTEST = """Running main() from ./googletest/src/gtest_main.cc

Repeating all tests (iteration 1) . . .

[ RUN      ] Session.A
[       OK ] Session.A (0 ms)
[ RUN      ] Session.B
[       OK ] Session.B (1 ms)
[ RUN      ] Wide/Pool.C/0
[       OK ] Wide/Pool.C/0 (0 ms)
[  PASSED  ] 3 tests.

Repeating all tests (iteration 2) . . .

[ RUN      ] Session.A
[       OK ] Session.A (0 ms)
[ RUN      ] Session.B
tests/unit/wire/session_test.cc:42: Failure
Expected equality of these values:
  got
    Which is: 3
[  FAILED  ] Session.B (2 ms)
[ RUN      ] Wide/Pool.C/0
[  FAILED  ] 1 test, listed below:
[  FAILED  ] Session.B
"""
TESTS = [("session_test.cc", "Session", "A"), ("session_test.cc", "Session", "B"),
         ("pool_test.cc", "Pool", "C")]


def test_gtest_iterations_become_runs_and_a_crash_fails_what_did_not_run():
    per_run = run.parse_gtest(GTEST, TESTS, 2, "wire-tests", "crashed")
    assert [(o.name, o.status) for o in per_run[0]] == [
        ("wire-tests: Session.A", "pass"), ("wire-tests: Session.B", "pass"),
        ("wire-tests: Wide/Pool.C/0", "pass")]
    got = {o.name: o for o in per_run[1]}
    assert got["wire-tests: Session.A"].status == "pass"
    assert got["wire-tests: Session.B"].status == "fail"
    assert "session_test.cc:42: Failure" in got["wire-tests: Session.B"].reason
    # Iteration 2 died inside Pool.C (no result line): a failure, not a pass.
    assert (got["wire-tests: Wide/Pool.C/0"].status, got["wire-tests: Wide/Pool.C/0"].reason) \
        == ("fail", "crashed")
    # The summary's "[  FAILED  ] Session.B" (no time) is not a second result.
    assert len(per_run[1]) == 3


def test_a_test_the_binary_never_ran_fails_every_run():
    per_run = run.parse_gtest(GTEST, [("x_test.cc", "Nope", "Missing")], 2, "b", "not run")
    assert [[(o.status, o.reason) for o in r] for r in per_run] == [[("fail", "not run")]] * 2


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.integration.test_process_faults" name="test_kill[broker-tls]">
<properties><property name="detect_s" value="0.034" /><property name="lost_bytes" value="0" />
<property name="other" value="7" /></properties></testcase>
<testcase classname="tests.integration.test_process_faults" name="test_kill[bridge-tls]">
<failure message="AssertionError: clean FINs on truncated bodies">long text</failure>
</testcase>
<testcase classname="tests.integration.test_ha" name="test_slow">
<skipped message="slow: set CT_SLOW=1 to run" /></testcase>
</testsuite></testsuites>"""


def test_junit_outcomes_and_only_the_four_measurements(tmp_path):
    p = tmp_path / "j.xml"
    p.write_text(JUNIT)
    a, b, c = run.parse_junit(p)
    assert (a.name, a.status, a.props) == ("test_process_faults.py::test_kill[broker-tls]", "pass",
                                           {"detect_s": [0.034], "lost_bytes": [0.0]})
    assert (b.status, b.reason) == ("fail", "AssertionError: clean FINs on truncated bodies")
    assert (c.status, c.reason) == ("skip", "slow: set CT_SLOW=1 to run")
    assert run.parse_junit(tmp_path / "missing.xml") is None


# Ids no row defines, spelled so that make check-ids does not take them for citations.
UNDEFINED, GENERATED_ONLY = "FI-" + "99", "FI-" + "77"
DOC = """# x

| id | what it sends or breaks | what must happen | test that proves it |
|----|-------------------------|------------------|---------------------|
| FI-43 | kill -9 of each process | streams reset | test_process_faults.py::test_kill; a_test.cc: S.T |
| FI-06 | a silent partition | bounded | not yet tested (cited in shared/os/net.h) |
| F-45 | an origin | reset | origin_test.cc: Origin.A, Origin.B; test_proxy_protocol.py |

Link faults (run at 0 and 40 ms RTT): FI-43,
FI-06, {undefined}.

<!-- faults-table:begin -->
| {generated_only} | generated rows define nothing |
<!-- faults-table:end -->
after
""".format(undefined=UNDEFINED, generated_only=GENERATED_ONLY)


def test_the_document_gives_ids_tests_and_link_faults():
    faults, unknown = run.load_faults(DOC)
    by = {f.id: f for f in faults}
    assert list(by) == ["FI-43", "FI-06", "F-45"]  # a generated row defines nothing
    assert unknown == [UNDEFINED]
    assert by["FI-43"].link and by["FI-06"].link and not by["F-45"].link
    assert by["FI-43"].integ == ["tests/integration/test_process_faults.py::test_kill"]
    assert by["FI-43"].unit == [("a_test.cc", "S", "T")]
    assert by["FI-06"].untested and not by["FI-06"].integ and not by["FI-06"].unit
    assert by["F-45"].integ == ["tests/integration/test_proxy_protocol.py"]
    assert [f.id for f in run.select(faults, "FI-,F-45")] == ["FI-43", "FI-06", "F-45"]
    assert [f.id for f in run.select(faults, "FI-" + "4")] == ["FI-43"]  # a prefix


class Args:
    runs, ids, rtt, note = 2, "", 40, "a note."


def test_the_table_counts_runs_percentiles_bytes_and_footnotes_the_first_failure(tmp_path):
    faults, _ = run.load_faults(DOC)
    by = {f.id: f for f in faults}
    r0, r40, un = run.Row(by["FI-43"], 0), run.Row(by["FI-43"], 40), run.Row(by["FI-06"], 0)
    ok = run.Outcome("t", "pass", props={"detect_s": [0.5], "recover_s": [1.0],
                                         "lost_bytes": [0], "corrupted_bytes": [0]})
    assert r0.add(0, [ok]) == "pass"
    bad = run.Outcome("t[x]", "fail", "AssertionError: a | b\nsecond line",
                      {"detect_s": [2.5], "lost_bytes": [10]})
    assert r0.add(1, [ok, bad]) == "FAIL"
    assert r40.add(0, [run.Outcome("t", "skip", "slow")]) == "skipped"
    table = run.render([r0, r40, un], Args(), 0, emulated=False)
    lines = table.splitlines()
    row0 = next(x for x in lines if x.startswith("| FI-43 |") and "| 0 |" in x)
    # detect samples 0.5, 0.5, 2.5: p50 0.50, p99 2.50 (nearest rank); bytes summed.
    assert "| 2 | 1 [1] | 0.50 / 2.50 | 1.00 / 1.00 | 10 / 0 |" in row0
    assert "| FI-43 | kill -9 of each process | 40 (asked) | 1 | 0 [2] |" in table
    assert "| FI-06 | a silent partition | 0 | - | not yet tested |" in table
    assert "[1] FI-43 at 0 ms RTT: 1 of 2 runs failed; first: run 2: t[x]: " \
           "AssertionError: a \\| b second line" in table
    assert "CT_LINK_RTT_MS=40" in table and "a note." in lines[0]
    assert lines[0].startswith("**2 ids** (1 not yet tested), **3 runs, 1 passed**")
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    run.write_doc(table, doc)
    text = doc.read_text()
    assert text.startswith(DOC.split("<!-- faults-table:begin -->")[0])
    assert text.endswith("<!-- faults-table:end -->\nafter\n")
    assert GENERATED_ONLY not in text and row0 in text


def test_percentiles_are_nearest_rank():
    vs = list(range(1, 101))
    assert (run.pct(vs, 50), run.pct(vs, 99), run.pct([3.0], 99)) == (50, 99, 3.0)


def test_parallel_runs_keep_run_order_and_run_serial_tests_alone(monkeypatch, tmp_path):
    """FAULT_JOBS: up to `jobs` pytest runs at once, a test conftest.py marks
    serial never beside another, and each row's runs added in order."""
    import threading
    import time as _time
    conftest = tmp_path / "conftest.py"
    conftest.write_text('SERIAL = (\n    "test_b.py::test_alone",\n)\n')
    monkeypatch.setattr(run, "exclusive_tests",
                        lambda conftest=conftest, f=run.exclusive_tests: f(conftest))
    assert run.exclusive_tests() == ("test_b.py::test_alone", "test_clock_jump.py")
    faults, _ = run.load_faults(DOC)
    shared, alone = faults[0], faults[2]
    shared.integ, shared.unit = ["tests/integration/test_a.py::test_x"], []
    alone.integ, alone.unit = ["tests/integration/test_b.py"], []  # its file holds a serial test
    assert run.is_exclusive(alone, run.exclusive_tests())
    assert not run.is_exclusive(shared, run.exclusive_tests())
    lock, now, log = threading.Lock(), {"n": 0, "most": 0}, []
    three = threading.Barrier(3, timeout=10)  # broken unless three shared runs overlap

    def fake(fault, rtt, k, build, out_dir, timeout):
        with lock:
            now["n"] += 1
            now["most"] = max(now["most"], now["n"])
            log.append(("start", fault.id, now["n"]))
        if fault is shared and k < 3:
            three.wait()
        _time.sleep(0.02 if k % 2 else 0)  # runs finish out of order
        with lock:
            now["n"] -= 1
        ok = run.Outcome("t", "pass" if k != 3 else "fail", "run 4 fails",
                         {"detect_s": [float(k)]})
        return [ok]

    monkeypatch.setattr(run, "run_integration", fake)

    class A(Args):
        runs, jobs, timeout = 6, 3, 10
    rows = [run.Row(shared, 0), run.Row(alone, 0)]
    run.run_all(rows, A(), tmp_path, tmp_path, _time.monotonic())
    assert now["most"] == 3  # the shared runs went three at a time
    assert all(n == 1 for what, fid, n in log if fid == alone.id)  # the serial one alone
    assert [r.runs for r in rows] == [6, 6] and [r.passed for r in rows] == [5, 5]
    assert rows[0].samples["detect_s"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # in run order
    assert rows[0].first_failure.startswith("run 4: t: run 4 fails")
