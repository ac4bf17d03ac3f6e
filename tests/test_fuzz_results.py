"""Hostile result folders (issue 11, finding 2): a malformed folder or line is skipped with
a warning naming its file and line, counted, and never stops the other folders.

The fuzz tests start from a real run folder written by the fixtures, give a copy of it
its own run id, break one line of its JSONL or one cell, row or header of its CSVs, and
read the set through `analysis.load`, the verdicts and `probe rebuild`: the untouched
folder's verdicts must come out as they do alone.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import math
import shutil
import tempfile
import tracemalloc
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import commands
from analysis.load import TABLES, Results, load
from analysis.verdicts import verdicts
from probe.cli import main
from probe.results import csvs, jsonl
from probe.results.schema import FILES
from tests.fixtures_results import FAST, POLICED, RunSpec, pairs, write_run

pytestmark = pytest.mark.timeout(600)
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BAD_ID = "20210312T090000Z-badbad"


@cache
def _good() -> Path:
    """One complete run folder (a policed Twitter image and its control, two repetitions)."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-good-"))
    atexit.register(shutil.rmtree, root, True)
    return write_run(root, RunSpec(pairs(("image",), POLICED, FAST), repeat=2, seed=1))


@cache
def _baseline() -> pd.DataFrame:
    return verdicts(load([_good()]))


def _set(tmp: Path, complete: bool) -> tuple[Path, Path]:
    """A results folder holding the good run and a copy of it under its own run id; the
    copy is read from its JSONL unless `complete`."""
    good = _good()
    shutil.copytree(good, tmp / "set" / good.name)
    bad = tmp / "set" / BAD_ID
    bad.mkdir()
    for f in good.iterdir():
        (bad / f.name).write_text(f.read_text().replace(good.name, BAD_ID))
    if not complete:
        info = json.loads((bad / "run.json").read_text())
        (bad / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    return tmp / "set", bad


def _check(results_dir: Path) -> Results:
    """Every table loads, the verdicts compute, and the good run's are as when alone."""
    r = load([results_dir])
    for name in TABLES:
        r.table(name)
    assert len(r.runs) == 2 and len(r.measurements) >= 4
    rows = verdicts(r)
    good = rows[rows["run_id"] == _good().name].reset_index(drop=True)
    pd.testing.assert_frame_equal(good, _baseline())
    return r


# --- JSON values and line damage ----------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                    st.sampled_from([10**400, -0.0, 1e308]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON document that holds a value."""
    out = []
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj[:3])  # the first few of long lists (samples) suffice
    else:
        return out
    for key, value in items:
        out.append((*prefix, key))
        out += _paths(value, (*prefix, key))
    return out


@st.composite
def damaged_line(draw: st.DrawFn, line: str) -> str:
    """A JSONL line with one value replaced, one key dropped, or its text cut, nested,
    padded or replaced by noise."""
    how = draw(st.sampled_from(["value", "value", "value", "drop", "cut", "deep", "noise",
                                "not-object"]))
    if how in ("value", "drop"):
        m = json.loads(line)
        path = draw(st.sampled_from(_paths(m)))
        parent = m
        for key in path[:-1]:
            parent = parent[key]
        if how == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(VALUES)
        return json.dumps(m)  # NaN and Infinity as Python writes them
    if how == "cut":
        return line[:draw(st.integers(0, len(line) - 1))]
    if how == "deep":
        n = draw(st.sampled_from([50, 5_000, 200_000]))
        return "[" * n + "]" * draw(st.sampled_from([0, n]))
    if how == "noise":
        return draw(st.text(min_size=1, max_size=40)).replace("\n", " ")
    return json.dumps(draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3))))


@FUZZ
@given(st.data(), st.booleans())
def test_fuzz_jsonl_line(data: st.DataObject, complete: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results_dir, bad = _set(Path(tmp), complete)
        path = bad / "measurements.jsonl"
        lines = path.read_text().splitlines()
        i = data.draw(st.integers(0, len(lines) - 1))
        lines[i] = data.draw(damaged_line(lines[i]))
        path.write_text("\n".join(lines) + "\n")
        r = _check(results_dir)
        assert all(s.path == path and s.line == i + 1 for s in r.skipped)
        skipped: list[jsonl.Skip] = []
        csvs.rebuild(bad, skipped.append)
        assert all(s.line == i + 1 for s in skipped)


# --- CSV damage ----------------------------------------------------------------

CELLS = st.one_of(st.text(max_size=10), st.sampled_from(
    ["abc", "nan", "inf", "-inf", "Infinity", "NaN", "1e999", "9" * 400, "true", "1_000", " 5",
     '"', '"a""b', "\x00", "0x10", ""]))


@st.composite
def damaged_csv(draw: st.DrawFn, text: str) -> str:
    """A CSV with one cell replaced, a row shortened or lengthened, noise inserted, or its
    header changed."""
    lines = text.splitlines()
    how = draw(st.sampled_from(["cell", "cell", "cell", "cells", "noise", "header"]))
    if how == "header":
        names = lines[0].split(",")
        names[draw(st.integers(0, len(names) - 1))] = draw(st.sampled_from(["x", names[0], ""]))
        lines[0] = ",".join(names)
        return "\n".join(lines) + "\n"
    i = draw(st.integers(1, len(lines) - 1))
    row = next(csv.reader([lines[i]]))
    if how == "cell":
        row[draw(st.integers(0, len(row) - 1))] = draw(CELLS)
    elif how == "cells":
        row = row[:draw(st.integers(0, len(row) - 1))] if draw(st.booleans()) else row + ["1"]
    else:
        lines.insert(i, draw(st.text(max_size=30)).replace("\n", " "))
        return "\n".join(lines) + "\n"
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    lines[i] = out.getvalue()
    return "\n".join(lines) + "\n"


@FUZZ
@given(st.data(), st.sampled_from(sorted(FILES)))
def test_fuzz_csv(data: st.DataObject, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results_dir, bad = _set(Path(tmp), complete=True)
        path = bad / name
        text = path.read_text()
        if text.count("\n") < 2:
            return
        path.write_text(data.draw(damaged_csv(text)))
        r = _check(results_dir)
        assert all(s.path == path for s in r.skipped)


# --- the commands ----------------------------------------------------------------


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_fuzz_commands_exit_0(data: st.DataObject) -> None:
    """verdicts, aggregate, report and rebuild on a set with a damaged JSONL line."""
    with tempfile.TemporaryDirectory() as tmp:
        results_dir, bad = _set(Path(tmp), complete=False)
        path = bad / "measurements.jsonl"
        lines = path.read_text().splitlines()
        lines[0] = data.draw(damaged_line(lines[0]))
        path.write_text("\n".join(lines) + "\n")
        runner = CliRunner()
        for args in ([commands.verdicts, "--format", "json"], [commands.aggregate],
                     [commands.report, "-o", str(Path(tmp) / "r.html")]):
            res = runner.invoke(args[0], [str(results_dir), *args[1:]])
            assert res.exit_code == 0 and res.exception is None, res.output
        res = runner.invoke(main, ["rebuild", str(bad)])
        assert res.exit_code == 0 and res.exception is None, res.output


# --- what the issue reproduced, one by one ------------------------------------------


def _samples(m: dict, value: object) -> None:
    m["test_keys"]["transfers"][0]["samples"] = value


BROKEN = {
    "samples-[[1]]": lambda m: _samples(m, [[1]]),
    "samples-string": lambda m: _samples(m, "abc"),
    "null-transfer": lambda m: m["test_keys"]["transfers"].__setitem__(0, None),
    "tcp_info-string": lambda m: m["test_keys"]["transfers"][0].__setitem__("tcp_info", "x"),
    "target-string": lambda m: (m["test_keys"] if "target" in m["test_keys"] else m)
    .__setitem__("target", "x"),  # wherever the line's format keeps it
    "samples-nan-inf": lambda m: _samples(m, [[0, math.nan], [math.inf, 1], [2, 3]]),
}


@pytest.mark.parametrize("complete", [False, True])
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_issue_cases_are_skipped_and_counted(tmp_path: Path, name: str, complete: bool) -> None:
    results_dir, bad = _set(tmp_path, complete)
    path = bad / "measurements.jsonl"
    lines = path.read_text().splitlines()
    m = json.loads(lines[1])
    BROKEN[name](m)
    lines[1] = json.dumps(m)
    path.write_text("\n".join(lines) + "\n")
    if complete and name == "samples-nan-inf":  # the CSVs as the probe would write them
        csvs.write_all(bad, jsonl.read(path))
    r = _check(results_dir)
    res = CliRunner().invoke(commands.verdicts, [str(results_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    if name == "samples-nan-inf":  # numbers, if not finite ones: read as missing values
        assert not r.skipped
        return
    if complete and name in ("samples-[[1]]", "samples-string", "null-transfer",
                             "tcp_info-string"):
        return  # the tables come from the CSVs, and the envelope is sound
    assert [(s.path, s.line) for s in r.skipped] == [(path, 2)]
    assert f"{path}:2: skipped" in res.output
    assert "skipped 1 malformed line(s) in 1 file(s)" in res.output


def test_a_number_column_with_text_is_skipped_by_line(tmp_path: Path) -> None:
    results_dir, bad = _set(tmp_path, complete=True)
    path = bad / "transfers.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[2].split(",")
    row[header.index("bytes")] = "abc"
    lines[2] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")
    r = _check(results_dir)
    assert [(s.path, s.line, s.reason) for s in r.skipped] == [
        (path, 3, "column bytes is not a number")]
    for args in ([commands.verdicts], [commands.aggregate, "--format", "csv"],
                 [commands.report, "-o", str(tmp_path / "r.html")]):
        res = CliRunner().invoke(args[0], [str(results_dir), *args[1:]])
        assert res.exit_code == 0, res.output
        assert f"{path}:3: skipped" in res.output
    report_md = (tmp_path / "r.md").read_text()
    assert "1 malformed line(s) in 1 file(s) were left out" in report_md
    assert "1 malformed line(s) in 1 file(s) were left out" in (tmp_path / "r.html").read_text()


def test_deep_nesting_and_huge_integers_are_skipped_also_by_rebuild(tmp_path: Path) -> None:
    results_dir, bad = _set(tmp_path, complete=False)
    path = bad / "measurements.jsonl"
    lines = path.read_text().splitlines()
    lines[0] = "[" * 200_000
    lines[2] = '{"run_id": ' + "1" * 5000 + "}"
    path.write_text("\n".join(lines) + "\n")
    r = _check(results_dir)
    assert [(s.line, s.reason) for s in r.skipped][0] == (1, "JSON nested too deeply")
    assert r.skipped[1].line == 3
    res = CliRunner().invoke(main, ["rebuild", str(bad), str(_good())])
    assert res.exit_code == 0, res.output
    assert "skipped 2 malformed line(s)" in res.output
    assert f"{_good()}: rebuilt" in res.output


def test_a_line_over_the_limit_is_skipped_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "measurements.jsonl"
    with open(path, "w") as f:
        f.write('{"a": 1}\n{"x": "' + "y" * (6 * jsonl.MAX_LINE_BYTES) + '"}\n{"b": 2}\n')
    skipped: list[jsonl.Skip] = []
    tracemalloc.start()
    try:
        got = list(jsonl.read(path, skipped.append))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [{"a": 1}, {"b": 2}]
    assert [(s.line, s.reason) for s in skipped] == [
        (2, f"line longer than {jsonl.MAX_LINE_BYTES} bytes")]
    assert peak < 2.5 * jsonl.MAX_LINE_BYTES  # a read of the limit, not the 96 MiB line


def test_rebuild_goes_on_after_a_folder_without_jsonl(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _, bad = _set(tmp_path, complete=False)
    res = CliRunner().invoke(main, ["rebuild", str(empty), str(bad)])
    assert res.exit_code == 2
    assert "no measurements.jsonl" in res.output and f"{bad}: rebuilt" in res.output


def test_run_json_fields_of_the_wrong_type_are_left_out(tmp_path: Path) -> None:
    results_dir, bad = _set(tmp_path, complete=True)
    info = json.loads((bad / "run.json").read_text())
    info.update(asn=["AS1"], label={"x": 1}, measurements="many")
    (bad / "run.json").write_text(json.dumps(info, indent=2))
    r = _check(results_dir)
    assert sorted(s.reason for s in r.skipped) == [
        "field asn is not a string", "field label is not a string",
        "field measurements is not an integer"]
    res = CliRunner().invoke(commands.aggregate, [str(results_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
