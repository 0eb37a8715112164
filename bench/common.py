"""What every benchmark records, and how it reports: the machine, the load on it, the dtype, a table, JSON.

A script (after its sys.path fix-up, see any bench/*.py) does:

    parser = bench_parser(__doc__, "one short pass (< 60 s)")   # --quick and --json PATH
    args = parser.parse_args()
    run = BenchRun("ingest", args.quick)                         # machine + load average at the start
    ...
    print_table([("source", ""), ("fps", ".1f")], rows)
    run.finish({"rows": rows}, args.json)                        # load average at the end, total s, JSON

These machines differ (an AMD EPYC with AVX2 only emulates bfloat16, 46x slower than float32; a Xeon with
AMX runs it natively) and are shared (other processes load the cores), so every JSON says which CPU, which
capability, which dtype `dtype: auto` gives a model here and why (vlm.config.resolve_dtype), and how loaded
the machine was while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from vlm.config import resolve_dtype


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (else what the platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """The vector instruction set torch dispatches to on this CPU: "AVX2", "AVX512", ... (imports torch)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """The machine and software a figure was measured on (JSON-ready)."""
    dtype, reason = resolve_dtype("cpu")
    return {
        "cpu_model": cpu_model(), "cpu_capability": cpu_capability(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
        "python": sys.version.split()[0], "torch": _version("torch"), "ray": _version("ray"),
        "dtype_auto": dtype, "dtype_auto_reason": reason,
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages, rounded: how busy other processes kept the cores."""
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class BenchRun:
    """One benchmark run: what it runs on and the load at its start; `finish` adds the end and writes JSON.

    started: `time.perf_counter()` when the run began (a script that wants its imports counted in the
    --quick budget passes the value it took before importing them).
    """

    bench: str
    quick: bool
    started: float = field(default_factory=time.perf_counter)
    environment: dict[str, Any] = field(default_factory=environment)
    load_start: list[float] = field(default_factory=load_average)

    def finish(self, results: dict[str, Any], json_path: str | Path | None = None) -> dict[str, Any]:
        """The report: bench, quick, environment, load average at start and end, total seconds, then
        `results`. Prints a one-line footer; writes the report to `json_path` when given."""
        total_s = round(time.perf_counter() - self.started, 1)
        env = self.environment
        report = {"bench": self.bench, "quick": self.quick, "environment": env,
                  "load_average": {"start": self.load_start, "end": load_average()}, "total_s": total_s, **results}
        print(f"{env['cpu_model']}, {env['cores']} cores, capability {env['cpu_capability']} (dtype auto: "
              f"{env['dtype_auto']}); load average {self.load_start[0]:.1f} -> {report['load_average']['end'][0]:.1f}"
              f"; total {total_s:.1f} s")
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(report, indent=2))
        return report


def bench_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: --quick (help: `quick_help`) and --json PATH.
    Its description is the first line of `doc` (the script's docstring)."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    return parser


def format_cell(value: Any, spec: str) -> str:
    """One table cell: None -> "-", numbers by the format `spec` (e.g. ".2f"), anything else by str()."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and spec:
        return format(value, spec)
    return str(value)


def print_table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> None:
    """Print `rows` under `columns` = [(header, format spec), ...]: text columns (spec "") left-aligned,
    number columns right-aligned, each as wide as its widest cell."""
    cells = [[format_cell(v, spec) for v, (_, spec) in zip(row, columns)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, (h, _) in enumerate(columns)]
    for line in ([h for h, _ in columns], *cells):
        print("  ".join(c.rjust(w) if spec else c.ljust(w) for c, w, (_, spec) in zip(line, widths, columns)))


def random_llava_onevision(config: Any, dtype: Any) -> Any:
    """A LlavaOnevisionForConditionalGeneration of `config` (a LlavaOnevisionConfig) in `dtype` (a torch dtype)
    with seeded uniform random weights (std 0.02): speed does not depend on the weights' values. The default
    initialisers are skipped (slow at real size); a defined fill keeps NaN and denormals out of the timings."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = LlavaOnevisionForConditionalGeneration._from_config(config, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.02 * 3**0.5, 0.02 * 3**0.5, generator=generator)
    return model
