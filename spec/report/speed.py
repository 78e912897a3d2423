"""The report's speed section, read from the JSON that ``make bench`` (pytest-benchmark) saves.

Per model, step (forward or train step) and mode (eager or compiled): each backend's median time per
step, its ratio to the fastest backend, throughput, first-call (compilation) time and achieved
FLOP/s as a fraction of the machine's float32 matmul peak, measured in the same run with each
framework's fastest matmul. A backend more than :data:`SLOW_RATIO` times slower than the fastest is
flagged; so is our compiled step where it is more than :data:`BASELINE_RATIO` times slower than the
hand-written baseline of its own framework — by the ratio measured in alternating rounds of the two
(``interleaved_ratio``), where the run has it, else by the two medians.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from spec.backend import KERAS_ENGINES

SLOW_RATIO = 1.5
SLOW_ROWS_EXPLAINED = "docs/speed.md"  # the profiled causes of the flagged rows
BASELINE_RATIO = 1.1


@dataclass(frozen=True)
class SpeedRow:
    group: str
    backend: str
    baseline: bool  # the hand-written minimal step, not our implementation
    seconds: float  # median time per call
    batch: int
    compile_seconds: float
    flops: int
    threads: str
    interleaved_ratio: float | None = None  # baselines: our step / this one, in alternating rounds

    @property
    def samples_per_second(self) -> float:
        return self.batch / self.seconds


@dataclass(frozen=True)
class SpeedReport:
    rows: list[SpeedRow]
    peak_flops: float  # float32 FLOP/s of the fastest framework matmul
    peak_backend: str
    machine: str

    def fastest(self, group: str) -> float:
        return min(r.seconds for r in self.rows if r.group == group and not r.baseline)


def _benchmarks(path: Path) -> tuple[list[dict], dict]:
    """A pytest-benchmark JSON file's benchmarks and machine info; ``ValueError`` naming the file if it
    is not such a file."""
    try:
        data = json.loads(path.read_text())
        return list(data["benchmarks"]), data.get("machine_info", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a pytest-benchmark JSON file ({exc})") from exc


def load_speed(*paths: Path) -> SpeedReport:
    """Read pytest-benchmark's JSON files — ``make bench`` writes one per pytest run, a run per Keras
    backend — as one report."""
    benchmarks: list[dict] = []
    machine_info: dict = {}
    for path in paths:
        found, machine_info = _benchmarks(path)
        benchmarks += found
    rows, peaks = [], {}
    for bench in benchmarks:
        info, median = bench.get("extra_info", {}), bench["stats"]["median"]
        if info.get("kind") == "matmul":
            peaks[info["backend"]] = info["flops"] / median
            continue
        rows.append(
            SpeedRow(
                bench["group"],
                info["backend"],
                bool(info.get("baseline")),
                median,
                info["batch"],
                info["compile_seconds"],
                info["flops"],
                str(info.get("threads", "?")),
                info.get("interleaved_ratio"),
            )
        )
    if not peaks:
        raise ValueError(f"{', '.join(map(str, paths))}: no matmul peak measured (run `make bench`)")
    cpu = machine_info.get("cpu", {})
    machine = f"{cpu.get('brand_raw', 'unknown CPU')}, {cpu.get('count', '?')} logical cores"
    peak_backend = max(peaks, key=lambda backend: peaks[backend])
    return SpeedReport(rows, peaks[peak_backend], peak_backend, machine)


def speed_markdown(report: SpeedReport) -> str:
    threads = sorted({f"{r.backend}: {r.threads}" for r in report.rows if not r.baseline})
    lines = [
        "",
        "## Speed (from `make bench`)",
        "",
        f"- **machine**: {report.machine}",
        f"- **float32 matmul peak**: {report.peak_flops / 1e9:.0f} GFLOP/s "
        f"({report.peak_backend}'s matmul, measured in the same run)",
        f"- **intra-op threads**: {'; '.join(threads)}",
        "",
        "Median time per call; ratio to the fastest backend in the same table; first call = tracing and",
        "compilation (excluded from the timing). Baselines are the minimal hand-written step of each framework.",
        "",
        "| model · step · mode | backend | ms | × fastest | samples/s | first call (s) | % of peak |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    by_group: dict[str, list[SpeedRow]] = defaultdict(list)
    for row in report.rows:
        by_group[row.group].append(row)
    notes, baseline_notes = [], []
    for group_name in sorted(by_group):
        fastest = report.fastest(group_name)
        for row in sorted(by_group[group_name], key=lambda r: (r.baseline, r.seconds)):
            ratio = row.seconds / fastest
            label = f"{row.backend} (baseline)" if row.baseline else row.backend
            flag = " **slow**" if not row.baseline and ratio > SLOW_RATIO else ""
            lines.append(
                f"| {group_name} | {label} | {row.seconds * 1e3:.3f} | {ratio:.2f}{flag} | "
                f"{row.samples_per_second:,.0f} | {row.compile_seconds:.2f} | "
                f"{100 * row.flops / row.seconds / report.peak_flops:.1f} |"
            )
            if flag:
                notes.append(f"{label} on {group_name} is {ratio:.2f}× slower than the fastest backend.")
        for base in (r for r in by_group[group_name] if r.baseline):
            ours = next((r for r in by_group[group_name] if r.backend == base.backend and not r.baseline), None)
            if ours is None:
                continue
            if base.interleaved_ratio is not None:
                ratio, how = base.interleaved_ratio, "in alternating rounds"
            else:
                ratio, how = ours.seconds / base.seconds, "by the medians"
            verdict = "within" if ratio <= BASELINE_RATIO else "over"
            baseline_notes.append(
                f"{base.backend}: our step on {group_name} takes {ratio:.2f}× the hand-written baseline "
                f"({how}; {verdict} the {BASELINE_RATIO}× bound)."
            )
    if baseline_notes:
        lines += ["", "Against the hand-written baselines:", ""] + [f"- {note}" for note in baseline_notes]
    overhead = keras_overhead(report)
    if overhead:
        lines += ["", "What Keras adds over its engine (Keras on JAX or torch / the same engine's own executor):", ""]
        lines += [f"- {note}" for note in overhead]
    if notes:
        lines += ["", f"Flagged (why, by family of rows: {SLOW_ROWS_EXPLAINED}):", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def keras_overhead(report: SpeedReport) -> list[str]:
    """Per table, the time of Keras on an engine over that engine's own executor (keras-jax / jax,
    keras-torch / torch), where the run has both."""
    seconds = {(r.group, r.backend): r.seconds for r in report.rows if not r.baseline}
    notes = []
    for (group_name, backend), keras_seconds in sorted(seconds.items()):
        engine = KERAS_ENGINES.get(backend, "")
        if (group_name, engine) in seconds:
            ratio = keras_seconds / seconds[(group_name, engine)]
            notes.append(f"{group_name}: {backend} takes {ratio:.2f}× {engine}'s time")
    return notes
