"""The speed section: read from pytest-benchmark's JSON, ratios, throughput, peak fraction, flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spec.report.speed import SLOW_ROWS_EXPLAINED, load_speed, speed_markdown

GROUP = "mnist_mlp · train step · compiled"


def bench(backend: str, median: float, *, baseline: bool = False, kind: str = "train step") -> dict:
    info = {"backend": backend, "mode": "compiled", "threads": "2", "compile_seconds": 1.5, "kind": kind}
    if kind == "matmul":
        info["flops"] = 2 * 2048**3
        group = "float32 matmul peak"
        return {"group": group, "name": f"peak[{backend}]", "stats": {"median": median}, "extra_info": info}
    info |= {"batch": 128, "flops": 1_000_000_000, "baseline": baseline}
    return {"group": GROUP, "name": f"step[{backend}]", "stats": {"median": median}, "extra_info": info}


def write(path: Path, benchmarks: list[dict]) -> Path:
    machine = {"cpu": {"brand_raw": "Test CPU", "count": 2}}
    path.write_text(json.dumps({"machine_info": machine, "benchmarks": benchmarks}))
    return path


def test_ratios_throughput_and_peak_fraction(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bench.json",
        [
            bench("torch", 0.004),
            bench("keras", 0.002),
            bench("jax", 0.001),
            bench("jax", 0.0008, baseline=True),
            bench("jax", 2 * 2048**3 / 400e9, kind="matmul"),  # 400 GFLOP/s
            bench("torch", 2 * 2048**3 / 300e9, kind="matmul"),
        ],
    )
    report = load_speed(path)
    assert report.peak_backend == "jax" and report.peak_flops == pytest.approx(400e9)
    text = speed_markdown(report)
    # jax is the fastest (ratio 1), torch 4× slower and keras 2× (both flagged); 1 GFLOP in 1 ms is
    # 1e12 FLOP/s, 250% of a 400 GFLOP/s peak (the inputs are made up, not a real machine)
    assert f"| {GROUP} | jax | 1.000 | 1.00 | 128,000 | 1.50 | 250.0 |" in text
    assert f"| {GROUP} | torch | 4.000 | 4.00 **slow** | 32,000 | 1.50 | 62.5 |" in text
    assert "torch on mnist_mlp · train step · compiled is 4.00× slower than the fastest backend." in text
    assert "keras on mnist_mlp · train step · compiled is 2.00× slower" in text
    # our jax step takes 1.25× the hand-written one by the medians: over the 1.1× bound
    assert (
        "jax: our step on mnist_mlp · train step · compiled takes 1.25× the hand-written baseline "
        "(by the medians; over the 1.1× bound)" in text
    )
    assert "Test CPU, 2 logical cores" in text and "400 GFLOP/s" in text
    # the flagged rows point to the page that explains them, which exists in the checkout
    assert f"Flagged (why, by family of rows: {SLOW_ROWS_EXPLAINED}):" in text
    assert (Path(__file__).parents[1] / SLOW_ROWS_EXPLAINED).is_file()


def test_the_baseline_bound_uses_the_alternating_rounds_when_measured(tmp_path: Path) -> None:
    """Medians taken minutes apart say 1.25×; the same-round ratio, when the run has it, decides."""
    baseline = bench("jax", 0.0008, baseline=True)
    baseline["extra_info"]["interleaved_ratio"] = 1.04
    path = write(tmp_path / "bench.json", [bench("jax", 0.001), baseline, bench("jax", 1e-3, kind="matmul")])
    text = speed_markdown(load_speed(path))
    assert (
        "jax: our step on mnist_mlp · train step · compiled takes 1.04× the hand-written baseline "
        "(in alternating rounds; within the 1.1× bound)" in text
    )


def test_a_file_that_is_not_a_benchmark_run_names_itself(tmp_path: Path) -> None:
    broken = tmp_path / "bench.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"bench\.json: not a pytest-benchmark JSON file"):
        load_speed(broken)
    without_peak = write(tmp_path / "nopeak.json", [bench("jax", 0.001)])
    with pytest.raises(ValueError, match="no matmul peak"):
        load_speed(without_peak)


def test_keras_runs_join_the_report_and_keras_s_time_over_its_engine_is_given(tmp_path: Path) -> None:
    """`make bench` writes one file per Keras backend's run; the report reads them as one and gives
    Keras on an engine over that engine's own executor (keras-jax / jax, keras-torch / torch). The
    baseline of Keras on JAX's run is JAX's hand-written step (tests/bench/baselines.py, by engine)."""
    peak = bench("jax", 1e-3, kind="matmul")
    main = write(tmp_path / "bench.json", [bench("torch", 0.004), bench("jax", 0.001), peak])
    on_jax = write(
        tmp_path / "bench-keras-jax.json", [bench("keras-jax", 0.003), bench("keras-jax", 0.0008, baseline=True)]
    )
    on_torch = write(tmp_path / "bench-keras-torch.json", [bench("keras-torch", 0.005)])
    report = load_speed(main, on_jax, on_torch)
    assert sorted(r.backend for r in report.rows if not r.baseline) == ["jax", "keras-jax", "keras-torch", "torch"]
    text = speed_markdown(report)
    assert f"- {GROUP}: keras-jax takes 3.00× jax's time" in text
    assert f"- {GROUP}: keras-torch takes 1.25× torch's time" in text
    assert f"keras-jax: our step on {GROUP} takes 3.75× the hand-written baseline" in text
