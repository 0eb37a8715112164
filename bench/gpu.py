"""One check of the real-size path on a GPU, sized to finish in under 8 minutes; one JSON and one table.

Sections (bench/gpu_sections.py), each with its own time budget inside the run's (TOTAL_BUDGET_S): a section
that would start past the budget is skipped with the reason recorded; one that fails records its error and the
run goes on (one GPU session is too rare to lose to one section).
  matmul_peak     bf16 FLOP/s of an 8192^3 matrix product: the peak the card reaches, for the ratios below;
  vision          LLaVA-OneVision's vision path at real size (SigLIP-so400m as LLaVA-OneVision runs it + projector
                  to 896 + 2x2 pooling, random weights, bf16) through encode_frames: frames/s and visual tokens/s
                  at batch 8/16/32/64, FLOP/s as a share of that peak; host-to-device copy, pageable vs pinned;
  compressor      the streaming Token Dynamics update, K=32, D=896, chunks of 4 x 196 tokens, CPU vs GPU;
  language_model  Qwen2-0.5B shapes (random weights, bf16): time to first token from K=32 visual tokens vs 16
                  frames of full tokens (3136), and greedy decode tokens/s;
  training        optimiser steps of `tokdyn train`'s loop: the configured tiny model and the real-size model;
  cuda_tests      the tests marked gpu (CUDA_TEST_FILES), in process through pytest when it is installed;
  capacity        bench/capacity.py's streams per GPU replica on the figures measured above.
Needs only torch, transformers, numpy and msgpack (no Ray, PyAV or pyzmq). --quick runs every section on this
CPU at tiny shapes (float32) in well under 60 s and writes every field (null where a GPU is needed).

    python bench/gpu.py --json out/gpu.json        # on the GPU machine (docs/gpu.md)
    .venv/bin/python bench/gpu.py --quick --json out/gpu-quick.json
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

STARTED = time.perf_counter()  # the budget counts the imports too
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/query.py: spinning OpenMP threads on shared cores
ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow
    sys.path[0] = str(ROOT)

import torch  # noqa: E402

from bench import gpu_sections as sections  # noqa: E402
from bench.capacity import capacity_from_report  # noqa: E402
from bench.common import BenchRun, bench_parser, cpu_model, print_table  # noqa: E402

TOTAL_BUDGET_S = 420.0  # the run's budget from process start: 7 minutes, leaving 1 for start-up and the exit
# Every test file with tests marked gpu (tests/bench/test_gpu.py checks that none is missing).
CUDA_TEST_FILES = ("tests/compressor/test_streaming.py", "tests/compressor/test_offline.py",
                   "tests/vlm/test_model.py", "tests/bench/test_gpu.py")


@dataclass(frozen=True)
class Section:
    """A measurement: its name (the JSON key), its own budget in seconds, and what runs it (plan, deadline,
    results so far) -> results."""

    name: str
    budget_s: float
    run: Callable[[sections.Plan, float, dict[str, Any]], dict[str, Any]]


def cuda_tests(plan: sections.Plan, deadline: float, _: dict[str, Any]) -> dict[str, Any]:
    """The tests marked gpu in CUDA_TEST_FILES through pytest.main in this process; tests not started by the
    deadline are skipped. Without pytest: none run, and the reason says so."""
    try:
        import pytest
    except ImportError:
        return {"runner": None, "reason": "pytest is not installed (carry its wheels: docs/gpu.md)", "exit_code": None,
                "counts": {}, "tests": []}

    class Collect:
        """pytest plugin: one record per test (its call, or the setup that skipped or failed it)."""

        def __init__(self) -> None:
            self.tests: list[dict[str, Any]] = []

        def pytest_runtest_setup(self, item: Any) -> None:
            if time.perf_counter() > deadline:
                pytest.skip("past the cuda_tests section's time budget")

        def pytest_collectreport(self, report: Any) -> None:
            if report.failed:  # a file that does not import here (a missing package): its tests cannot run
                self.tests.append({"id": report.nodeid, "outcome": "error", "seconds": 0.0,
                                   "message": str(report.longrepr)[-600:]})

        def pytest_runtest_logreport(self, report: Any) -> None:
            if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
                message = None if report.passed else str(report.longrepr)[-600:]
                self.tests.append({"id": report.nodeid, "outcome": report.outcome,
                                   "seconds": round(report.duration, 3), "message": message})

    collect = Collect()
    code = pytest.main(["-q", "-m", "gpu", "-p", "no:cacheprovider", "--continue-on-collection-errors", "--rootdir",
                        str(ROOT),
                        *(str(ROOT / f) for f in CUDA_TEST_FILES)], plugins=[collect])
    counts = {o: sum(t["outcome"] == o for t in collect.tests) for o in ("passed", "failed", "skipped", "error")}
    return {"runner": f"pytest {pytest.__version__}", "reason": None, "exit_code": int(code), "counts": counts,
            "tests": collect.tests}


def capacity(plan: sections.Plan, deadline: float, results: dict[str, Any]) -> dict[str, Any]:
    """Streams per replica on this run's figures (bench/capacity.py); per GPU only when measured on one."""
    missing = [name for name in ("matmul_peak", "vision", "compressor") if not results.get(name)]
    if missing:
        raise LookupError(f"capacity needs the sections {missing}, which did not run")
    model = capacity_from_report(results)
    per = model["streams_per_replica"]
    return {"replica": model["device"], "seconds_per_frame": model["seconds_per_frame"], "batch": model["batch"],
            "streams_per_replica": per, "streams_per_gpu": per["effective"] if plan.device.type == "cuda" else None,
            "bound_by": per["bound_by"], "growth": model["growth"], "assumptions": model["assumptions"]}


SECTIONS = (
    Section("matmul_peak", 20, lambda p, d, r: sections.matmul_peak(p, d)),
    Section("vision", 90, lambda p, d, r: sections.vision(p, d, (r.get("matmul_peak") or {}).get("flops_per_s"))),
    Section("compressor", 40, lambda p, d, r: sections.compressor(p, d)),
    Section("language_model", 80, lambda p, d, r: sections.language_model(p, d)),
    Section("training", 100, lambda p, d, r: sections.training(p, d)),
    Section("cuda_tests", 90, cuda_tests),
    Section("capacity", 5, capacity),
)


def device_info(device: torch.device) -> dict[str, Any]:
    """The card (or CPU) the figures come from, and the software."""
    cuda = device.type == "cuda"
    props = torch.cuda.get_device_properties(device) if cuda else None
    return {"type": device.type, "name": torch.cuda.get_device_name(device) if cuda else cpu_model(),
            "capability": list(torch.cuda.get_device_capability(device)) if cuda else None,
            "memory_gib": props.total_memory / 2**30 if cuda else None,
            "cuda": torch.version.cuda if cuda else None, "torch": torch.__version__,
            "transformers": metadata.version("transformers")}


def run_sections(plan: sections.Plan, budget_s: float, only: set[str] | None = None) -> dict[str, Any]:
    """Every section in order (those in `only` when given) within `budget_s` from process start -> results, with
    "sections": per section its status (ok / skipped / error), seconds, and the reason when not ok."""
    results: dict[str, Any] = {"device": device_info(plan.device), "budget_s": budget_s}
    status: dict[str, dict[str, Any]] = {}
    end = STARTED + budget_s
    for section in SECTIONS:
        started = time.perf_counter()
        results[section.name] = None
        if only is not None and section.name not in only:
            status[section.name] = {"status": "skipped", "seconds": 0.0, "reason": "not in --only"}
            continue
        if started + section.budget_s / 2 > end:
            status[section.name] = {"status": "skipped", "seconds": 0.0, "reason": f"{started - STARTED:.0f} s into "
                                    f"the run, too little of its {budget_s:.0f} s budget left"}
            continue
        try:
            results[section.name] = section.run(plan, min(started + section.budget_s, end), results)
            status[section.name] = {"status": "ok", "reason": None}
        except Exception as error:  # noqa: BLE001 - one GPU session is too rare to lose to one section
            lines = traceback.format_exception(error)
            status[section.name] = {"status": "error", "reason": f"{type(error).__name__}: {error}"[:500],
                                    "traceback": "".join(lines)[-2000:]}
        status[section.name]["seconds"] = round(time.perf_counter() - started, 1)
        if plan.device.type == "cuda":
            torch.cuda.empty_cache()
    results["sections"] = status
    return results


def table_rows(r: dict[str, Any]) -> list[list[Any]]:
    """(measure, value, unit) rows of the report's headline figures; a missing one shows "-"."""
    def get(*keys: Any) -> Any:
        value: Any = r
        for key in keys:
            value = None if value is None else value[key] if isinstance(value, list) else value.get(key)
        return value

    rows = [["matmul peak (best n^3 product)", (get("matmul_peak", "flops_per_s") or 0) / 1e12 or None, "TFLOP/s"]]
    for row in get("vision", "rows") or []:
        rows += [[f"vision batch {row['batch']}", row["frames_per_s"], "frames/s"],
                 [f"vision batch {row['batch']}", row["tokens_per_s"], "visual tokens/s"],
                 [f"vision batch {row['batch']}", row["fraction_of_peak"], "of matmul peak"]]
    rows += [["frames H2D pageable", get("vision", "h2d", "pageable_gb_per_s"), "GB/s"],
             ["frames H2D pinned", get("vision", "h2d", "pinned_gb_per_s"), "GB/s"],
             ["compressor update K=32 CPU", get("compressor", "cpu_update_ms"), "ms/chunk"],
             ["compressor update K=32 GPU", get("compressor", "gpu_update_ms"), "ms/chunk"],
             ["TTFT K=32 visual tokens", get("language_model", "ttft_compact_ms"), "ms"],
             ["TTFT 16 frames x 196 tokens", get("language_model", "ttft_full_ms"), "ms"],
             ["decode (batch 1)", get("language_model", "decode_tokens_per_s"), "tokens/s"]]
    for row in get("training", "rows") or []:
        rows.append([f"train step {row['model']} batch {row['batch']}", row["examples_per_s"], "examples/s"])
    rows += [["tiny train-default, configured steps", get("training", "tiny_configured_steps_h"), "hours"],
             ["streams per replica", get("capacity", "streams_per_replica", "effective"), get("capacity", "bound_by")],
             ["CUDA tests passed / failed / skipped / error",
              " / ".join(str(get("cuda_tests", "counts", k)) for k in ("passed", "failed", "skipped", "error")), ""]]
    for name, s in r["sections"].items():
        if s["status"] != "ok":
            rows.append([f"section {name}", s["status"], s["reason"]])
    return rows


def main() -> None:
    parser = bench_parser(__doc__, "every section on this CPU at tiny shapes (float32), no CUDA (< 60 s)")
    parser.add_argument("--budget-s", type=float, default=TOTAL_BUDGET_S, help="the run's time budget, seconds")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), help="comma-separated sections to run (a second "
                        f"try after a failure), of: {', '.join(s.name for s in SECTIONS)}")
    args = parser.parse_args()
    if args.only and not args.only <= {s.name for s in SECTIONS}:
        parser.error(f"--only: unknown sections {sorted(args.only - {s.name for s in SECTIONS})}")
    if not args.quick and not torch.cuda.is_available():
        parser.error("no CUDA device here: the real-size run needs one (--quick runs the tiny shapes on the CPU)")
    torch.manual_seed(0)
    plan = sections.make_plan(args.quick, torch.device("cpu" if args.quick else "cuda"))
    bench = BenchRun("gpu", args.quick, started=STARTED)
    results = run_sections(plan, args.budget_s, args.only)
    print(f"\n{results['device']['name']} ({plan.device.type}, {str(plan.dtype).removeprefix('torch.')}"
          f"{', quick: tiny shapes' if args.quick else ''})")
    print_table([("measure", ""), ("value", ".4g"), ("unit", "")], table_rows(results))
    bench.finish(results, args.json)


if __name__ == "__main__":
    main()
