"""The learning curve of every phase of a `tokdyn train` run, from its metrics.jsonl.

    python bench/curves.py out/train-default [--json PATH]

Vision stage: frames seen -> held-out accuracy of the objects' mean tokens, object cells (shape, colour) and
background cells. Reading phases (each curriculum stage, then main): examples seen -> held-out accuracy overall
and per category (oracle memories for an oracle stage, real ones otherwise), with the phase's last logged
training losses. Nothing is recomputed: the figures are the ones the run logged as it went.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script, bench/ would shadow the compressor package

from bench.common import print_table  # noqa: E402
from scenes.questions import CATEGORIES  # noqa: E402


def read_curves(run: Path) -> dict:
    """{"vision": [vision_eval records], "phases": {phase: [eval records]}, "losses": {phase: last loss record}}."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"run: expected {path} (a tokdyn train output directory), found none")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    phases: dict[str, list[dict]] = {}
    losses: dict[str, dict] = {}
    for record in records:
        if record.get("event") == "eval":
            phases.setdefault(record.get("phase", "main"), []).append(record)
        elif "loss" in record and "phase" in record and "event" not in record:
            losses[record["phase"]] = record
    return {"vision": [r for r in records if r.get("event") == "vision_eval"], "phases": phases, "losses": losses}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    json_path = None
    if "--json" in argv:
        i = argv.index("--json")
        json_path, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    if len(argv) != 1:
        raise SystemExit("usage: python bench/curves.py RUN_DIR [--json PATH]")
    curves = read_curves(Path(argv[0]))
    if curves["vision"]:
        print_table([("vision: frames seen", "d"), ("objects", ".3f"), ("obj. cells", ".3f"), ("shape", ".3f"),
                     ("colour", ".3f"), ("background", ".3f")],
                    [[r["frames_seen"], r.get("object_means"), r["object_cells"], r["object_shape"],
                      r["object_colour"], r["background_cells"]] for r in curves["vision"]])
    for phase, evals in curves["phases"].items():
        cats = [c for c in CATEGORIES if any(f"accuracy/{c}" in r for r in evals)]
        print_table([(f"{phase}: examples seen", "d"), ("acc %", ".1f")] + [(c[:8], ".0f") for c in cats],
                    [[r.get("examples_seen", r["step"]), 100 * r["accuracy"]]
                     + [100 * r[f"accuracy/{c}"] if f"accuracy/{c}" in r else None for c in cats] for r in evals])
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(curves, indent=2))
    return curves


if __name__ == "__main__":
    main()
