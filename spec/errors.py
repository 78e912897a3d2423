"""The errors triptych raises for bad input: each names the culprit."""

from __future__ import annotations

from collections.abc import Iterable


class SpecError(ValueError):
    """An invalid spec field: names the field, the bad value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str | Iterable[object]) -> None:
        if not isinstance(allowed, str):
            allowed = ", ".join(repr(a) for a in allowed)
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: got {value!r}; allowed: {allowed}")


class ParamError(ValueError):
    """Canonical parameters that do not fit a spec: names the parameter."""


class WeightFileError(ParamError):
    """A weight file that cannot be read or does not fit the spec: names the file and the parameter."""


class BackendUnavailable(RuntimeError):
    """A backend whose framework is not installed or failed to import."""


class UnsupportedOption(SpecError):
    """A valid spec option that a framework's native tools cannot express: names the field and backend,
    and ``native``, the value the framework computes instead (``None`` when there is no single one)."""

    def __init__(self, backend: str, field: str, value: object, why: str, native: object = None) -> None:
        hint = f" (it computes {native!r})" if native is not None else ""
        ValueError.__init__(self, f"{field}: {value!r} is not supported by the {backend} backend{hint}: {why}")
        self.field, self.value, self.allowed, self.backend, self.native = field, value, why, backend, native


class TrainingDiverged(FloatingPointError):
    """A non-finite loss during training: names the backend, recipe and step."""


class BatchError(SpecError):
    """A batch that does not fit its model: names the model, the batch (``field``: ``x``, ``images``),
    what came (``value``) and what the model takes (``allowed``)."""

    def __init__(self, model: str, field: str, value: str, allowed: str) -> None:
        ValueError.__init__(self, f"{model}: {field} {value}; expected {allowed}")
        self.model, self.field, self.value, self.allowed = model, field, value, allowed


class PortError(ValueError):
    """A user's model that cannot be ported: names the model, the layer or module in it (``where``,
    its path in the source framework) and why, with what would make it portable where known."""

    def __init__(self, model: str, where: str, why: str) -> None:
        super().__init__(f"{model}: {where}: {why}")
        self.model, self.where, self.why = model, where, why
