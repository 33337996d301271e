"""What an explanation costs per row, in process: scoring alone against scoring + explaining.

    python -m bench.explain --usecase credit --rows 300 --rounds 7

Fits the use case's pipeline on its bundled data for each family asked (default: the
spec's logistic regression and hist_gradient_boosting on the same data), serves it with
the scorer the server would choose (:func:`tabops.scoring.parity.compile_scorer`), builds
the :class:`~tabops.scoring.explain.Explainer`, and times, per row, one record at a time
and a batch: ``score`` alone, ``explain`` alone, and both, interleaved round after round.
Reported as ratios to plain scoring (best rounds, CPU time and wall clock), written to
``bench/results/explain-<time>.json`` with the medians too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO, save
from tabops.config import Settings
from tabops.data.datasets import read_source
from tabops.scoring.base import Decision
from tabops.scoring.explain import Explainer
from tabops.scoring.parity import compile_scorer
from tabops.scoring.records import api_records
from tabops.spec.files import load_usecase
from tabops.spec.schema import ModelSpec, UseCase
from tabops.training.pipeline import build_pipeline

FAMILY_PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {},
    "hist_gradient_boosting": {},
    "random_forest": {},
}


def _per_row_us(
    fns: dict[str, Callable[[], object]], rows: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Microseconds per row of each function (each handles ``rows``), run interleaved
    round after round so that other work on the machine hits them alike.

    Both the wall-clock time and the process's CPU time (every thread's, so OpenMP work is
    counted once per thread that did it) are kept: on a machine shared with other work the
    wall clock also counts the time spent waiting for a core, the CPU time does not. The
    best round (the least disturbed) and the median of each.
    """
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm up
    for _ in range(rounds):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append((time.process_time() - start_cpu) / rows * 1e6)
            wall[name].append((time.perf_counter() - start) / rows * 1e6)
    return {
        name: {
            "cpu_best": min(cpu[name]),
            "cpu_median": statistics.median(cpu[name]),
            "wall_best": min(wall[name]),
            "wall_median": statistics.median(wall[name]),
        }
        for name in fns
    }


def _one_at_a_time(
    call: Callable[[Sequence[Any]], object], records: list[Any]
) -> Callable[[], None]:
    def run() -> None:
        for record in records:
            call([record])

    return run


def bench_family(
    spec: UseCase, settings: Settings, family: str, rows: int, batch: int, rounds: int
) -> dict[str, Any]:
    """Time scoring and explaining for one model family on the use case's data."""
    params = spec.model.params if family == spec.model.family else FAMILY_PARAMS[family]
    spec = spec.model_copy(update={"model": ModelSpec(family=family, params=params)})  # type: ignore[arg-type]
    data = read_source(spec, settings)
    pipeline = build_pipeline(spec).fit(data[spec.feature_names], data[spec.target.name])
    decision = Decision(
        classes=tuple(spec.target.classes),
        positive=spec.positive_class,
        threshold=0.5 if spec.task == "binary" else None,
    )
    reference = data.sample(n=min(1000, len(data)), random_state=0)
    scorer, path = compile_scorer(spec, pipeline, decision, "bench", reference)
    explainer = Explainer(spec, pipeline, reference)
    records = api_records(spec, data.sample(n=max(rows, batch), random_state=1))
    singles, many = records[:rows], records[:batch]

    def both(chunk: Sequence[Any]) -> None:
        scorer.score(chunk)
        explainer.explain(chunk)

    out: dict[str, Any] = {
        "family": family,
        "scoring_path": path,
        "explain_method": explainer.method.method,
        "scale": explainer.method.scale,
        "additivity_error": explainer.max_error,
    }
    for mode, n, make in (
        ("single", len(singles), lambda call: _one_at_a_time(call, singles)),
        ("batch", len(many), lambda call: lambda: call(many)),
    ):
        timed = _per_row_us(
            {
                "score": make(scorer.score),
                "explain": make(explainer.explain),
                "score_and_explain": make(both),
            },
            n,
            rounds,
        )
        out[mode] = {
            "rows": n,
            "us_per_row": timed,
            "ratio_score_and_explain_over_score": {
                clock: timed["score_and_explain"][f"{clock}_best"] / timed["score"][f"{clock}_best"]
                for clock in ("cpu", "wall")
            },
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--usecase", default="credit")
    parser.add_argument(
        "--families",
        default="logistic_regression,hist_gradient_boosting",
        help="comma-separated model families (random_forest too, if you have the time)",
    )
    parser.add_argument("--rows", type=int, default=300, help="records scored one at a time")
    parser.add_argument("--batch", type=int, default=1000, help="records in the batch")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tabops-bench-explain-") as tmp:
        settings = Settings(var_dir=Path(tmp) / "var", usecases_dir=REPO / "usecases")
        spec = load_usecase(settings.usecases_dir, args.usecase)
        results = []
        load_before = os.getloadavg()[0]
        for family in args.families.split(","):
            result = bench_family(spec, settings, family, args.rows, args.batch, args.rounds)
            results.append(result)
            for mode in ("single", "batch"):
                r = result[mode]
                best = {k: v["cpu_best"] for k, v in r["us_per_row"].items()}
                ratio = r["ratio_score_and_explain_over_score"]
                print(
                    f"{args.usecase} {family:24s} {mode:6s}"
                    f"  CPU us/row: score {best['score']:8.1f}"
                    f"  explain {best['explain']:8.1f}"
                    f"  both {best['score_and_explain']:8.1f}"
                    f"  ratio {ratio['cpu']:6.2f} (wall clock {ratio['wall']:6.2f})",
                    flush=True,
                )
    path = save(
        "explain",
        {
            "usecase": args.usecase,
            "rounds": args.rounds,
            # other work on the machine slows both sides of each ratio, not equally
            "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
            "results": results,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
