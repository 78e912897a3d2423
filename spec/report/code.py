"""Where the code that builds each canonical layer is, in each framework's implementation: the source
blocks that ``make site`` shows side by side.

A native model records where each canonical layer lives in it (``model.layer_paths``,
:mod:`spec.layer_paths`). Building the model while each framework's layer constructor is watched
(:attr:`spec.backend.NativeBackend.layer_constructor`) tells which line of the framework's
``models.py`` made that layer; the block around the line (the ``case`` arm of a ``match`` it is in,
else its function) is what the site aligns with the other frameworks' blocks for the same layers.
Nothing is copied by hand: the blocks are read from the source files the models ran.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from spec.backend import NativeBackend
from spec.errors import UnsupportedOption
from spec.layer_paths import NativePath, resolve
from spec.models import ModelSpec
from spec.params import init_params, layer_names

ROOT = Path(__file__).resolve().parents[2]
FORWARD_METHOD = {"torch": "forward", "keras": "call", "jax": "__call__"}  # what each framework calls on a layer
CATALOGUE_TAG = re.compile(r"\(catalogue: ([^)]+)\)")  # in a comment: the line pins that catalogue row
FINDING_TAG = re.compile(r"\bfinding (\d+)\b")


@dataclass(frozen=True)
class Block:
    """Lines ``start``–``end`` (1-based, inclusive) of a source file: a function, or one ``case`` arm of
    a ``match`` in it, that builds native layers; ``built_at`` are the lines that construct them."""

    file: Path
    function: str  # qualified name in the file, e.g. "BasicBlock.__init__"
    case: str | None  # the arm's pattern, e.g. "Dense()"
    start: int
    end: int
    built_at: tuple[int, ...] = ()
    method: bool = False  # the function is a method of a class (a model's or a block's)

    @property
    def key(self) -> tuple[Path, int, int]:
        return self.file, self.start, self.end

    @property
    def title(self) -> str:
        return self.function + (f", case {self.case}" if self.case else "")

    def lines(self) -> list[str]:
        return source_lines(self.file)[self.start - 1 : self.end]

    def relative_file(self) -> str:
        return self.file.relative_to(ROOT).as_posix() if self.file.is_relative_to(ROOT) else str(self.file)


@functools.cache
def source_lines(file: Path) -> list[str]:
    return file.read_text().splitlines()


@functools.cache
def _syntax_tree(file: Path) -> ast.Module:
    return ast.parse(file.read_text(), filename=str(file))


def _spans(node: ast.AST) -> tuple[int, int]:
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])  # type: ignore[attr-defined]
    return start, node.end_lineno or node.lineno  # type: ignore[attr-defined]


def block_at(file: Path, line: int) -> Block:
    """The innermost function of ``file`` around ``line``, narrowed to the ``case`` arm the line is in."""
    function: tuple[str, ast.AST, bool] | None = None
    case: ast.match_case | None = None

    def visit(node: ast.AST, prefix: str) -> None:
        nonlocal function, case
        for child in ast.iter_child_nodes(node):
            if not hasattr(child, "lineno") and not isinstance(child, ast.match_case):
                visit(child, prefix)
                continue
            span = (child.pattern.lineno, _last_line(child)) if isinstance(child, ast.match_case) else _spans(child)
            if not span[0] <= line <= span[1]:
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                function, case = (f"{prefix}{child.name}", child, isinstance(node, ast.ClassDef)), None
                visit(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                if isinstance(child, ast.match_case):
                    case = child
                visit(child, prefix)

    visit(_syntax_tree(file), "")
    if function is None:
        raise ValueError(f"{file}:{line} is not inside a function")
    name, node, method = function
    if case is not None:
        return Block(file, name, ast.unparse(case.pattern), case.pattern.lineno, _last_line(case), method=method)
    start, end = _spans(node)
    return Block(file, name, None, start, end, method=method)


def _last_line(case: ast.match_case) -> int:
    return max(getattr(node, "end_lineno", 0) or 0 for node in ast.walk(case))


Calls = tuple[int, ...]  # lines of the framework's models.py on the stack when a layer was made, innermost first


@contextlib.contextmanager
def construction_sites(backend: NativeBackend[Any], models_file: Path) -> Iterator[dict[int, tuple[Calls, object]]]:
    """While open, every native layer the framework constructs is recorded — ``id(layer)`` → the lines
    of ``models_file`` on the stack as it was made (none for the model itself, made by the backend),
    and the layer (kept alive, so ids stay unique) — in the order they were made, by wrapping the
    framework's layer constructor (:attr:`spec.backend.NativeBackend.layer_constructor`). The layer's
    own constructor is left out (a block class's ``__init__`` calling its base's); a layer the
    framework makes without its constructor (a deep copy) is not recorded."""
    owner, method, index = backend.layer_constructor
    original = getattr(owner, method)
    own = method in owner.__dict__  # else inherited: removing the wrapper restores it
    sites: dict[int, tuple[Calls, object]] = {}

    def recording(*args: Any, **kwargs: Any) -> Any:
        layer = args[index]
        if id(layer) not in sites:
            lines = []
            frame: FrameType | None = sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_filename == str(models_file) and not _constructing(frame, layer):
                    lines.append(frame.f_lineno)
                frame = frame.f_back
            sites[id(layer)] = (tuple(lines), layer)
        return original(*args, **kwargs)

    setattr(owner, method, recording)
    try:
        yield sites
    finally:
        if own:
            setattr(owner, method, original)
        else:
            delattr(owner, method)


def _constructing(frame: FrameType, layer: object) -> bool:
    """Whether ``frame`` is ``layer``'s own constructor (a subclass's ``__init__`` calling its base's)."""
    return frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is layer


def call_path(file: Path, calls: Calls) -> tuple[Block, ...]:
    """The blocks a layer's construction went through, outermost first: from the innermost call up to
    the first that is a ``case`` arm (a dispatch on the spec's layer kind) or a method (a model or
    block class), whose lines on the path are marked (``Block.built_at``)."""
    path = []
    for line in calls:
        block = block_at(file, line)
        path.append(dataclasses.replace(block, built_at=(line,)))
        if block.case is not None or block.method:
            break
    return tuple(reversed(path))


def models_module(backend: NativeBackend[Any], spec: ModelSpec) -> ModuleType:
    return sys.modules[backend.model_class(spec).__module__]


@dataclass(frozen=True)
class Built:
    """One framework's model of a spec, as the site reads it."""

    framework: str
    blocks: dict[str, tuple[Block, ...]]  # canonical layer -> the call path that built its native layer
    classes: dict[str, type]  # name -> the framework's own classes (from its models.py) in the model
    unsupported: str | None = None  # why the framework's own layers cannot build the spec


def built(backend: NativeBackend[Any], spec: ModelSpec) -> Built:
    """Build ``spec`` on ``backend`` and find, for every canonical layer, the code that built it."""
    module = models_module(backend, spec)
    file = Path(inspect.getfile(module))
    model_class = backend.model_class(spec)
    try:
        with construction_sites(backend, file) as sites:
            backend.build(spec, init_params(spec, 0))
    except UnsupportedOption as exc:
        return Built(backend.framework, {}, {}, str(exc))
    # the model as its class made it: a backend may return a copy (JAX builds an abstract model and
    # fills a new one), whose layers no constructor made
    model = next(obj for _, obj in sites.values() if type(obj) is model_class)
    paths: Mapping[str, NativePath] = model.layer_paths  # type: ignore[attr-defined]
    calls = {layer: call_path(file.resolve(), _calls_of(model, path, sites, layer)) for layer, path in paths.items()}
    # a block that builds several layers marks each of their lines
    lines: dict[tuple[Path, int, int], set[int]] = {}
    for blocks in calls.values():
        for block in blocks:
            lines.setdefault(block.key, set()).update(block.built_at)
    marked = {
        layer: tuple(dataclasses.replace(b, built_at=tuple(sorted(lines[b.key]))) for b in blocks)
        for layer, blocks in calls.items()
    }
    classes = {type(obj).__name__: type(obj) for _, obj in sites.values() if type(obj).__module__ == module.__name__}
    return Built(backend.framework, marked, classes)


def _calls_of(model: object, path: NativePath, sites: Mapping[int, tuple[Calls, object]], layer: str) -> Calls:
    """The calls that made the native layer at ``path``, or the nearest recorded layer above it."""
    for depth in range(len(path), 0, -1):
        calls = sites.get(id(resolve(model, path[:depth])), ((), None))[0]
        if calls:
            return calls
    raise LookupError(f"no line of {type(model).__module__} was seen constructing canonical layer {layer!r} ({path})")


@dataclass(frozen=True)
class AlignedRow:
    """Canonical layers whose native layers the same code builds, in every framework."""

    layers: tuple[str, ...]
    blocks: dict[str, tuple[Block, ...]]  # framework -> the call path, outermost first


def aligned(spec: ModelSpec, models: Mapping[str, Built]) -> list[AlignedRow]:
    """The spec's canonical layers grouped by the code that builds them in each framework of
    ``models``, in the order of their first layer."""
    rows: dict[tuple[tuple[tuple[Path, int, int], ...], ...], list[str]] = {}
    for layer in layer_names(spec):
        key = tuple(tuple(b.key for b in m.blocks[layer]) for m in models.values())
        rows.setdefault(key, []).append(layer)
    return [
        AlignedRow(tuple(layers), {fw: m.blocks[layers[0]] for fw, m in models.items()}) for layers in rows.values()
    ]


def forward_blocks(models: Mapping[str, Built]) -> list[tuple[str, dict[str, Block | None]]]:
    """Each class the frameworks' models are made of, by name (the implementations share class names),
    with its forward method (:data:`FORWARD_METHOD`) as a block — its own, or the one it inherits from
    a class of the same models.py — or ``None`` where that framework has no such class or takes the
    method from the framework itself."""
    names = list(dict.fromkeys(name for m in models.values() for name in m.classes))
    rows = []
    for name in names:
        per_framework: dict[str, Block | None] = {}
        for framework, model in models.items():
            cls = model.classes.get(name)
            method = FORWARD_METHOD[framework]
            owners = [] if cls is None else [c for c in cls.__mro__ if c.__module__ == cls.__module__]
            function = next((c.__dict__[method] for c in owners if method in c.__dict__), None)
            per_framework[framework] = None if function is None else function_block(function)
        if any(per_framework.values()):
            rows.append((name, per_framework))
    return rows


def function_block(function: Callable[..., Any]) -> Block:
    file = Path(inspect.getfile(function)).resolve()
    lines, start = inspect.getsourcelines(function)
    return Block(file, function.__qualname__, None, start, start + len(lines) - 1)


def judge_blocks(spec: ModelSpec) -> list[Block]:
    """The judge's forward pass for ``spec``'s kind: the arm of :func:`spec.reference.logits_and_state`
    that matches it, then every function of :mod:`spec.reference` it uses, directly or through
    another, in the order first named."""
    from spec import reference

    dispatch = function_block(reference.logits_and_state)
    arms = [
        node
        for node in ast.walk(_syntax_tree(dispatch.file))
        if isinstance(node, ast.match_case) and dispatch.start <= node.pattern.lineno <= dispatch.end
    ]
    for arm in arms:
        if type(spec).__name__ in {n.id for n in ast.walk(arm.pattern) if isinstance(n, ast.Name)}:
            functions: dict[str, Block] = {}
            pending = _called(arm, reference)
            while pending:
                name = pending.pop(0)
                if name not in functions:
                    functions[name] = function_block(getattr(reference, name))
                    pending += _called(ast.parse(inspect.getsource(getattr(reference, name))), reference)
            pattern = ast.unparse(arm.pattern)
            return [
                Block(dispatch.file, dispatch.function, pattern, arm.pattern.lineno, _last_line(arm)),
                *functions.values(),
            ]
    raise LookupError(f"the judge has no arm for a {type(spec).__name__}")


def _called(tree: ast.AST, module: ModuleType) -> list[str]:
    """The functions of ``module`` that ``tree`` names (calls, or hands on: ``partial(conv2d, …)``), in order."""
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    return [
        name
        for name in dict.fromkeys(names)
        if inspect.isfunction(getattr(module, name, None)) and getattr(module, name).__module__ == module.__name__
    ]


def tags(line: str) -> tuple[list[str], list[int]]:
    """The catalogue rows (topics) a source line names in a comment, ``(catalogue: <topic>)``, and the
    findings it names anywhere, ``finding N`` (docstrings cite them too)."""
    comment = line.split("#", 1)[1] if "#" in line else ""
    return CATALOGUE_TAG.findall(comment), [int(n) for n in FINDING_TAG.findall(line)]
