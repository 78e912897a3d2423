"""The canonical weight file: canonical names -> float32 arrays, as a NumPy ``.npz`` archive or, for a
path ending in ``.safetensors``, a safetensors file (the format other tools read without pickle).

Besides the tensors, the file holds one JSON entry, ``__triptych__`` (an array in the archive, the
header's metadata in safetensors), naming the format version and the spec the weights were saved
for, so that a file is checked against the spec it is loaded into.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spec.errors import ParamError, WeightFileError
from spec.models import ModelSpec
from spec.params import check_params

FORMAT_VERSION = 1
_META_KEY = "__triptych__"


SAFETENSORS = ".safetensors"


def save_weights(path: str | Path, spec: ModelSpec, params: Mapping[str, np.ndarray]) -> Path:
    """Write ``params`` (checked against ``spec``) to ``path``; returns the path written."""
    path = Path(path)
    checked = check_params(spec, params)
    meta = json.dumps({"format_version": FORMAT_VERSION, "model": spec.name, "kind": spec.kind})
    if path.suffix == SAFETENSORS:
        from safetensors.numpy import save_file

        save_file({name: np.ascontiguousarray(value) for name, value in checked.items()}, path, {_META_KEY: meta})
        return path
    with path.open("wb") as f:  # a file object keeps numpy from appending ".npz" to the name
        arrays: dict[str, Any] = {**checked, _META_KEY: np.array(meta)}  # numpy's stub reads ** as its flags
        np.savez(f, **arrays)
    return path


def load_weights(path: str | Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Read a weight file and check every tensor against ``spec``.

    Raises :class:`WeightFileError` naming the file and, where one is at fault, the parameter.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file {str(path)!r} does not exist")
    arrays, meta_text = _read_safetensors(path) if path.suffix == SAFETENSORS else _read_npz(path)
    if meta_text is None:
        raise WeightFileError(f"weight file {str(path)!r} has no {_META_KEY!r} entry: not a triptych weight file")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise WeightFileError(f"weight file {str(path)!r}: its {_META_KEY!r} entry is not valid JSON") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightFileError(
            f"weight file {str(path)!r} has format version {meta.get('format_version')!r}; "
            f"this triptych reads version {FORMAT_VERSION}"
        )
    if meta.get("kind") != spec.kind:
        raise WeightFileError(f"weight file {str(path)!r} holds a {meta.get('kind')!r} model, not a {spec.kind!r}")
    try:
        return check_params(spec, arrays, source=f"weight file {str(path)!r}")
    except ParamError as exc:
        raise WeightFileError(str(exc)) from exc


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise WeightFileError(f"weight file {str(path)!r} is not a readable .npz archive ({exc})") from exc
    meta = arrays.pop(_META_KEY, None)
    return arrays, None if meta is None else str(meta)


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "np") as archive:
            arrays = {name: archive.get_tensor(name) for name in archive.keys()}  # noqa: SIM118 (not a dict)
            metadata = archive.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise WeightFileError(f"weight file {str(path)!r} is not a readable safetensors file ({exc})") from exc
    return arrays, metadata.get(_META_KEY)
