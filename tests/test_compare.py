"""The main job: the report runs, covers what it should and fails on an out-of-tolerance row."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import get_backend, selected_backends
from spec.backend import KERAS_ENGINES, Backend, process_backends
from spec.optimizers import OPTIMIZER_ZOO
from spec.recipes import RECIPES, SEQUENCE_RECIPES
from spec.report import compare

# The report's code is framework-neutral: `make test` runs it on torch, whose model builds and first
# calls are the cheapest (each test took 4–17 s on Keras and JAX on a 2-core EPYC); the contract
# tests judge each backend's numbers. `make test-all` runs the report on every backend.
pytestmark = pytest.mark.quick_on("torch")


@pytest.fixture(autouse=True)
def no_saved_benchmarks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The report must not pick up a `make bench` run lying in the working tree."""
    monkeypatch.setattr(compare, "DEFAULT_BENCH", tmp_path / "no-bench.json")


def has_float64(backend: Backend) -> bool:
    """Whether the backend builds float64 models: not Keras on JAX or torch (finding 19)."""
    return backend.name not in ("keras-jax", "keras-torch")


def test_report_for_one_backend(backend: Backend, backend_name: str, tmp_path: Path) -> None:
    status = compare.main(["--backend", backend_name, "--model", "digits_mlp", "--no-training", "--out", str(tmp_path)])
    assert status == 0
    report = json.loads((tmp_path / "compare.json").read_text())
    assert [(r["model"], r["backend"], r["ok"]) for r in report["models"]] == [("digits_mlp", backend_name, True)]
    assert report["models"][0]["params"] == 6570
    # float32 gradients against the backend's own float64 build: float32 rounding, not zero (two
    # float32 runs would agree exactly) and within the gradient tolerance; none where there is no float64
    witness_error = report["models"][0]["witness_gradient_error"]
    if has_float64(backend):
        assert 0 < witness_error < report["models"][0]["gradient_tolerance"]
    else:
        assert witness_error is None
    assert {r["optimizer"] for r in report["optimizers"]} == set(OPTIMIZER_ZOO)
    assert all(r["ok"] for r in report["optimizers"])
    # the precision section: each format's error is the format's rounding — float32 ≪ float16 < bfloat16
    (precision,) = report["precisions"]
    assert precision["ok"] and (precision["model"], precision["backend"]) == ("digits_mlp", backend_name)
    errors = precision["errors"]
    assert 0 < errors["float32"] < 1e-5 < errors["mixed_float16"] < errors["mixed_bfloat16"] < 0.1, errors
    markdown = (tmp_path / "compare.md").read_text()
    assert "## Precision: float32, mixed bfloat16 and mixed float16" in markdown
    assert "| digits_mlp | 64-64(relu)-32(relu)-10(softmax) | " + backend_name in markdown
    assert report["header"][backend_name].startswith(backend.framework)
    assert report["convergence"] == []


def test_training_part_reports_convergence_and_draws_the_loss_curves(
    backend: Backend, backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = {
        name: dataclasses.replace(RECIPES[name], epochs=3, target_accuracy=0.5, early_stopping=None)
        for name in ("digits_adam", "digits_rmsprop")
    }
    # a regression too: judged by its test loss (its baseline, the target's variance, is ~0.3)
    forecast = dataclasses.replace(SEQUENCE_RECIPES["lstm_forecaster_sine_forecast"], epochs=1, target_loss=0.05)
    monkeypatch.setattr(compare, "RECIPES", short)
    monkeypatch.setattr(compare, "SEQUENCE_RECIPES", {forecast.name: forecast})
    monkeypatch.setattr(compare, "TRANSFORMER_RECIPES", {})
    monkeypatch.setattr(compare, "OPTIMIZER_ZOO", {})
    assert compare.main(["--backend", backend_name, "--model", "digits_mlp", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "compare.json").read_text())
    rows = report["convergence"]
    assert [(r["recipe"], r["backend"]) for r in rows] == [(name, backend_name) for name in [*short, forecast.name]]
    # each run's smoothed loss curve, for the site's figures: at most 200 points
    for name, curves in report["loss_curves"].items():
        assert list(curves) == [backend_name], name
        assert 0 < len(curves[backend_name]) <= 200 and all(0 < v < 10 for v in curves[backend_name]), name
    regression = rows.pop()
    assert regression["ok"] and regression["test_accuracy"] is None and regression["test_loss"] <= 0.05
    for row in rows:
        assert row["ok"] and row["steps_to_target"] is not None and row["steps_to_target"] <= 36
        assert 0.5 <= row["test_accuracy"] <= 1.0
    # torch runs the classic RMSprop with its own epsilon placement, and the report says so
    substituted = "epsilon_placement outside_sqrt (spec: inside_sqrt)"
    assert (substituted in rows[1]["notes"]) == (backend_name == "torch")
    markdown = (tmp_path / "compare.md").read_text()
    assert "| digits_adam |" in markdown and f"]({compare.LOSS_CURVES})" in markdown
    png = (tmp_path / compare.LOSS_CURVES).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_a_gan_short_of_its_modes_fails_the_run_and_its_samples_are_drawn(
    backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # three epochs of the ring GAN cover none of the 8 modes (all of them take ~100)
    gan = dataclasses.replace(RECIPES["ring_gan_adam"], epochs=3)
    monkeypatch.setattr(compare, "RECIPES", {gan.name: gan})
    monkeypatch.setattr(compare, "SEQUENCE_RECIPES", {})
    monkeypatch.setattr(compare, "TRANSFORMER_RECIPES", {})
    monkeypatch.setattr(compare, "OPTIMIZER_ZOO", {})
    assert compare.main(["--backend", backend_name, "--model", "ring_gan", "--out", str(tmp_path)]) == 1
    (row,) = json.loads((tmp_path / "compare.json").read_text())["convergence"]
    assert not row["ok"] and row["target_modes"] == 8 and row["modes_covered"] < 8 and "modes covered" in row["notes"]
    assert "**target missed** | 8 modes |" in (tmp_path / "compare.md").read_text()
    png = (tmp_path / compare.GAN_SAMPLES).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_out_of_tolerance_row_fails_the_run(
    backend: Backend, backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = compare.compare_model

    def off_by_a_lot(case, backend):  # a backend whose forward pass is wrong
        row = real(case, backend)
        return compare.Row(**{**row.__dict__, "forward_scaled_error": 10.0})

    monkeypatch.setattr(compare, "compare_model", off_by_a_lot)
    monkeypatch.setattr(compare, "OPTIMIZER_ZOO", {})
    args = ["--backend", backend_name, "--model", "digits_mlp", "--no-training", "--out", str(tmp_path)]
    assert compare.main(args) == 1
    assert "**NO**" in (tmp_path / "compare.md").read_text()


def test_a_model_the_framework_cannot_express_is_reported_not_native(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's nn.GRU has only the reset-after formula: the report says so instead of failing."""
    if "torch" not in selected_backends(request.config):
        pytest.skip("--backend did not select torch")
    get_backend(request.config, "torch")
    monkeypatch.setattr(compare, "OPTIMIZER_ZOO", {})
    argv = ["--backend", "torch", "--model", "gru_reset_before", "--no-training", "--out", str(tmp_path)]
    assert compare.main(argv) == 0
    (row,) = json.loads((tmp_path / "compare.json").read_text())["models"]
    assert row["ok"] and row["params"] is None and "reset gate after" in row["unsupported"]
    assert "| gru_reset_before |" in (tmp_path / "compare.md").read_text()


def test_an_output_that_cancels_to_near_zero_is_judged_against_its_magnitude(backend: Backend) -> None:
    """bigru_classifier's one logit sums terms that cancel: on one example of the report's batch the
    judge's output is over 100 times smaller than its terms. Mixed precision rounds at the terms'
    size, so the precision section judges each error against the output's magnitude."""
    from spec import reference as ref

    case = dataclasses.replace(compare.ZOO_CASES["bigru_classifier"], perturbed=False)
    params, (x, _) = case.params(compare.SEED), case.batch(compare.SEED, size=compare.PRECISION_BATCH)
    magnitude, logits = ref.output_magnitude(case.spec, params, x), ref.logits(case.spec, params, x)
    assert (magnitude / np.abs(logits)).max() > 100
    row = compare.compare_precision(case, backend)
    assert row.ok and all(error is not None for error in row.errors.values()), row


def test_a_user_s_spec_file_runs_through_the_report(backend: Backend, backend_name: str, tmp_path: Path) -> None:
    """A spec file as triptych-port writes one — a torch-style CNN, its convolution's bias before a
    BatchNorm (a gradient that is exactly zero, judged as such) — in the report like a zoo model."""
    spec_file = tmp_path / "user_spec.py"
    spec_file.write_text(
        "from spec.layers import *\nfrom spec.models import *\n\n"
        "SPEC = CNNSpec('user_cnn', (8, 8, 1), (Conv2D(4, 3, 1, ((1, 1), (1, 1))), BatchNorm(0.9, 1e-5),\n"
        "    Act(Activation('relu')), Pool2D('max', 2), Flatten(), Dense(10)), 'linear')\n"
    )
    args = ["--backend", backend_name, "--spec-file", str(spec_file), "--no-training", "--out", str(tmp_path)]
    assert compare.main(args) == 0
    report = json.loads((tmp_path / "compare.json").read_text())
    assert [(r["model"], r["ok"]) for r in report["models"]] == [("user_cnn", True)]
    assert [r["model"] for r in report["precisions"]] == ["user_cnn"]


def test_a_spec_file_without_a_spec_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = tmp_path / "empty.py"
    spec_file.write_text("MODEL = 3\n")
    assert compare.main(["--spec-file", str(spec_file), "--no-training", "--out", str(tmp_path)]) == 2
    assert "defines no SPEC" in capsys.readouterr().err


def test_each_other_keras_backend_runs_in_a_worker_process_and_joins_the_report(tmp_path: Path) -> None:
    """Keras fixes its backend once per process: the report runs each Keras executor this process
    cannot in a worker of its own, and joins its rows in the tables' order (model, then backend)."""
    other = next(name for name in KERAS_ENGINES if name not in process_backends())
    argv = ["--backend", "torch", "--backend", other, "--model", "digits_mlp", "--no-training", "--out", str(tmp_path)]
    assert compare.main(argv) == 0
    report = json.loads((tmp_path / "compare.json").read_text())
    assert [(r["backend"], r["ok"]) for r in report["models"]] == [("torch", True), (other, True)]
    assert [r["backend"] for r in report["optimizers"]][:2] == ["torch", other]
    assert KERAS_ENGINES[other] in report["header"][other]
