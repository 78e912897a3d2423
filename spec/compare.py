"""The main job: every zoo model on every installed backend, compared with the float64 judge.

``python -m spec.compare`` (or ``make compare``) prints a markdown table and writes it, with a JSON
copy, under ``reports/``. Columns: parameter count (from the framework, checked against the spec),
the largest forward error against the judge, the largest relative error of the gradient along random
directions (:func:`spec.reference.check_gradients`), and whether both are within the tolerance table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spec import reference as ref
from spec.backend import BACKEND_NAMES, Backend, available_backends
from spec.data import digits
from spec.errors import BackendUnavailable
from spec.losses import DEFAULT_LOSS
from spec.models import ZOO, ModelSpec
from spec.params import count_params, init_params
from spec.tolerances import max_scaled_error, tolerance

BATCH = 64
SEED = 0


@dataclass(frozen=True)
class Row:
    model: str
    architecture: str
    backend: str
    device: str
    params: int
    params_match_spec: bool
    forward_max_abs_error: float
    forward_scaled_error: float  # forward error / tolerance: ≤ 1 is within tolerance
    gradient_max_rel_error: float
    gradient_tolerance: float
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.params_match_spec
            and self.forward_scaled_error <= 1.0
            and self.gradient_max_rel_error <= self.gradient_tolerance
        )


def compare_model(spec: ModelSpec, backend: Backend) -> Row:
    """Build ``spec`` on ``backend`` from the canonical init and measure it against the judge."""
    start = time.perf_counter()
    params = init_params(spec, SEED)
    split = digits(spec.input_shape)
    x, labels = split.x_test[:BATCH], split.y_test[:BATCH]
    loss = DEFAULT_LOSS[spec.output_activation]
    model = backend.build(spec, params)
    device = backend.device()
    outputs = backend.forward(model, x)
    expected = ref.forward(spec, params, x)
    _, grads = backend.loss_and_grads(model, x, labels, loss)
    checks = ref.check_gradients(spec, params, x, labels, loss, grads, seed=SEED)
    return Row(
        model=spec.name,
        architecture=spec.describe(),
        backend=backend.name,
        device=device,
        params=backend.count_params(model).total,
        params_match_spec=backend.count_params(model) == count_params(spec),
        forward_max_abs_error=float(np.abs(outputs - expected).max()),
        forward_scaled_error=max_scaled_error(outputs, expected, tolerance("forward", "float32", device)),
        gradient_max_rel_error=max(c.relative_error for c in checks),
        gradient_tolerance=tolerance("gradient", "float32", device).rtol,
        seconds=time.perf_counter() - start,
    )


def markdown(rows: list[Row], header: dict[str, str], unavailable: dict[str, str]) -> str:
    lines = ["# triptych: cross-backend comparison", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines += [f"- **{name}**: not run ({reason})" for name, reason in unavailable.items()]
    lines += [
        "",
        "Forward error: max |output − judge| over a batch of embedded digits (float32 backend, float64 judge).",
        "Gradient error: max relative error of the loss's directional derivative, backend gradient vs",
        "float64 central differences, over random directions per tensor and across all tensors.",
        "",
        "| model | architecture | backend | device | params | forward max abs error | gradient max rel error "
        "| within tolerance |",
        "|---|---|---|---|---:|---:|---:|:---:|",
    ]
    for r in rows:
        params = f"{r.params:,}" + ("" if r.params_match_spec else " ≠ spec")
        lines.append(
            f"| {r.model} | {r.architecture} | {r.backend} | {r.device} | {params} | {r.forward_max_abs_error:.2e} "
            f"| {r.gradient_max_rel_error:.2e} | {'yes' if r.ok else '**NO**'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triptych-compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        action="append",
        choices=[*BACKEND_NAMES, "all"],
        default=[],
        help="backend(s) to run (repeatable; default: all installed)",
    )
    parser.add_argument(
        "--model",
        action="append",
        choices=sorted(ZOO),
        default=[],
        help="zoo model(s) to run (repeatable; default: all)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="directory for compare.md/.json")
    args = parser.parse_args(argv)
    names = BACKEND_NAMES if not args.backend or "all" in args.backend else tuple(args.backend)
    found = available_backends(names)
    backends = [b for b in found.values() if not isinstance(b, BackendUnavailable)]
    unavailable = {n: str(b) for n, b in found.items() if isinstance(b, BackendUnavailable)}
    if not backends:
        print("no backend is available:\n" + "\n".join(unavailable.values()), file=sys.stderr)
        return 2
    header = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        **{b.name: b.framework_version() for b in backends},
    }
    rows = [compare_model(ZOO[m], b) for m in (args.model or list(ZOO)) for b in backends]
    text = markdown(rows, header, unavailable)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.md").write_text(text)
    payload = {"header": header, "unavailable": unavailable, "rows": [asdict(r) | {"ok": r.ok} for r in rows]}
    (args.out / "compare.json").write_text(json.dumps(payload, indent=2))
    print(text)
    print(f"written: {args.out / 'compare.md'}, {args.out / 'compare.json'}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
