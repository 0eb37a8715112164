"""bench/common.py: what every benchmark JSON records, and the table every benchmark prints."""

from __future__ import annotations

import json

from bench.common import BenchRun, bench_parser, print_table
from vlm.config import resolve_dtype


def test_report_records_machine_dtype_and_load(tmp_path):
    """Given a finished run, when its report is written, then the JSON names the CPU, its capability, the
    dtype `auto` picks here (and why), the load average at start and end, and carries the results."""
    run = BenchRun("ingest", quick=True)
    report = run.finish({"rows": [1, 2]}, tmp_path / "out" / "bench.json")
    written = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert written == json.loads(json.dumps(report))
    env = written["environment"]
    assert env["cpu_capability"] and env["cpu_model"] and env["cores"] >= 1 and env["torch"] and env["ray"]
    assert (env["dtype_auto"], env["dtype_auto_reason"]) == resolve_dtype("cpu")
    assert len(written["load_average"]["start"]) == len(written["load_average"]["end"]) == 3
    assert (written["bench"], written["quick"], written["rows"]) == ("ingest", True, [1, 2])


def test_parser_has_quick_and_json():
    args = bench_parser("Title line.\n\nMore.", "short").parse_args(["--quick", "--json", "x.json"])
    assert args.quick and str(args.json) == "x.json"


def test_table_aligns_text_left_numbers_right_and_shows_missing(capsys):
    print_table([("name", ""), ("ms", ".1f"), ("n", "d")], [["a", 1.25, 3], ["long name", None, 12]])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["name        ms   n",
                     "a          1.2   3",
                     "long name    -  12"]
