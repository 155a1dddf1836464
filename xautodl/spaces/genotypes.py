"""NASNet (DARTS) space genotypes: the value objects, their text and dict forms, and the published cells.

A cell genotype is a tuple of steps; each step is a tuple of `(op, input)` pairs whose outputs are summed. Inputs
0 and 1 are the cell inputs (outputs of the cell before the previous one and of the previous cell), input k >= 2 is
the node made by step k - 2. The cell output concatenates the nodes listed in `concat`.

Accepted outside forms (`parse_genotype`): a published name, a JSON file, JSON text, the printed form of
`str(NASNetGenotype)`, the original tool's dict form (steps of `(op, input, weight)` triples, `dua_sepc_*` names, as
printed in its logs) and DARTS's `Genotype(normal=[...], normal_concat=range(2, 6), ...)`.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ArchError
from .ops import canonical_op_name, parameter_free_share

Step = tuple[tuple[str, int], ...]
CellSteps = tuple[Step, ...]

SPACE_NAME = "nasnet"  # this space's one name in code and files (the original tool said "darts")
FIXED_REDUCTION_TEXT = "fixed (GDAS-FRC reduction cell)"


def _cell_error(cell_name: str, problem: str) -> ArchError:
    return ArchError(f"invalid {cell_name} cell: {problem}. A cell is a list of steps, each a list of (op, input) "
                     f"pairs; inputs 0 and 1 are the cell inputs, input k >= 2 is the node of step k-2")


def _normalise_pair(pair: Any, step_index: int, cell_name: str) -> tuple[str, int]:
    """(op, input) or the original tool's (op, input, weight) -> (canonical op, input), checking the input index."""
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) not in (2, 3):
        raise _cell_error(cell_name, f"step {step_index} holds {pair!r}, expected (op, input) or (op, input, weight)")
    op, node = pair[0], pair[1]
    if not isinstance(op, str):
        raise _cell_error(cell_name, f"step {step_index} names op {op!r}, expected a string")
    if isinstance(node, bool) or not isinstance(node, int):
        raise _cell_error(cell_name, f"step {step_index} takes input {node!r}, expected an integer")
    if not 0 <= node < step_index + 2:
        raise _cell_error(cell_name, f"step {step_index} takes input {node}, but only nodes 0..{step_index + 1} "
                                     f"exist before it")
    try:
        return canonical_op_name(op), node
    except ArchError as error:
        raise _cell_error(cell_name, f"step {step_index}: {error}") from None


def _normalise_steps(steps: Any, cell_name: str) -> CellSteps:
    """Nested steps, or DARTS's flat list of pairs (two per step), -> a tuple of validated steps."""
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or len(steps) == 0:
        raise _cell_error(cell_name, f"got {steps!r}, expected a non-empty list of steps")
    if isinstance(steps[0], Sequence) and steps[0] and isinstance(steps[0][0], str):
        if len(steps) % 2:
            raise _cell_error(cell_name, f"a flat list of (op, input) pairs needs two per step, got {len(steps)}")
        steps = [steps[i:i + 2] for i in range(0, len(steps), 2)]
    normalised = []
    for index, step in enumerate(steps):
        if isinstance(step, (str, bytes)) or not isinstance(step, Sequence) or len(step) == 0:
            raise _cell_error(cell_name, f"step {index} is {step!r}, expected a non-empty list of (op, input) pairs")
        normalised.append(tuple(_normalise_pair(pair, index, cell_name) for pair in step))
    return tuple(normalised)


def _normalise_concat(concat: Any, num_steps: int, cell_name: str) -> tuple[int, ...]:
    if isinstance(concat, (str, bytes)) or not isinstance(concat, (Sequence, range)) or len(concat) == 0:
        raise _cell_error(cell_name, f"concat {concat!r} is not a non-empty list of node indices")
    nodes = tuple(concat)
    valid = range(2, num_steps + 2)
    invalid = any(isinstance(n, bool) or not isinstance(n, int) or n not in valid for n in nodes)
    if invalid or len(set(nodes)) != len(nodes):
        raise _cell_error(cell_name, f"concat {list(nodes)} must list distinct step nodes among {list(valid)}")
    return nodes


@dataclass(frozen=True)
class CellGenotype:
    """One cell: `steps` (each a tuple of (op, input) pairs) and the concatenated step nodes `concat`."""

    steps: CellSteps
    concat: tuple[int, ...]
    name: str = field(default="cell", compare=False, repr=False)  # only used in error messages

    def __post_init__(self) -> None:
        steps = _normalise_steps(self.steps, self.name)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "concat", _normalise_concat(self.concat, len(steps), self.name))

    @property
    def multiplier(self) -> int:
        """How many step nodes the output concatenates (output channels = multiplier * C)."""
        return len(self.concat)

    def __str__(self) -> str:
        groups = ["|" + "|".join(f"{op}~{node}" for op, node in step) + "|" for step in self.steps]
        return "+".join(groups) + " concat=" + ",".join(str(n) for n in self.concat)

    def to_lists(self) -> list[list[list[Any]]]:
        """The steps as JSON-safe nested lists."""
        return [[[op, node] for op, node in step] for step in self.steps]


@dataclass(frozen=True)
class NASNetGenotype:
    """A NASNet-space architecture: normal cell, and reduction cell or None for the fixed GDAS-FRC reduction cell."""

    normal: CellSteps
    normal_concat: tuple[int, ...]
    reduce: CellSteps | None = None
    reduce_concat: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        normal = CellGenotype(self.normal, self.normal_concat, "normal")
        object.__setattr__(self, "normal", normal.steps)
        object.__setattr__(self, "normal_concat", normal.concat)
        if self.reduce is None:
            object.__setattr__(self, "reduce_concat", None)
            return
        if self.reduce_concat is None:
            raise _cell_error("reduction", "reduce_concat is missing")
        reduce = CellGenotype(self.reduce, self.reduce_concat, "reduction")
        object.__setattr__(self, "reduce", reduce.steps)
        object.__setattr__(self, "reduce_concat", reduce.concat)

    @property
    def normal_cell(self) -> CellGenotype:
        return CellGenotype(self.normal, self.normal_concat, "normal")

    @property
    def reduce_cell(self) -> CellGenotype | None:
        """The searched reduction cell, or None when the fixed GDAS-FRC reduction cell is used."""
        if self.reduce is None:
            return None
        return CellGenotype(self.reduce, self.reduce_concat, "reduction")

    @property
    def fixed_reduction(self) -> bool:
        return self.reduce is None

    def parameter_free_share(self) -> float:
        """The share of the searched cells' ops that have no weights (`none`, `skip_connect`, the poolings)."""
        steps = self.normal + (self.reduce or ())
        return parameter_free_share([op for step in steps for op, _ in step])

    def __str__(self) -> str:
        reduce = FIXED_REDUCTION_TEXT if self.reduce is None else str(self.reduce_cell)
        return f"normal: {self.normal_cell}\nreduce: {reduce}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict form, read back by `from_dict`."""
        return {
            "space": SPACE_NAME,
            "normal": self.normal_cell.to_lists(),
            "normal_concat": list(self.normal_concat),
            "reduce": None if self.reduce is None else self.reduce_cell.to_lists(),
            "reduce_concat": None if self.reduce_concat is None else list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NASNetGenotype:
        """Read `to_dict()` output, the original tool's dict (with (op, input, weight) triples) or DARTS's fields."""
        if not isinstance(data, Mapping):
            raise ArchError(f"a NASNet genotype dict was expected, got {type(data).__name__}")
        space = data.get("space", SPACE_NAME)
        if space != SPACE_NAME:
            raise ArchError(f"this genotype belongs to the {space!r} space, not to {SPACE_NAME!r}")
        missing = [key for key in ("normal", "normal_concat") if key not in data]
        if missing:
            raise ArchError(f"a NASNet genotype dict needs the keys normal, normal_concat (and reduce, "
                            f"reduce_concat); missing: {', '.join(missing)}")
        return cls(data["normal"], data["normal_concat"], data.get("reduce"), data.get("reduce_concat"))


def _steps(*pairs: tuple[str, int]) -> CellSteps:
    """Group a published flat list of (op, input) pairs into two-input steps."""
    return tuple(tuple(pairs[i:i + 2]) for i in range(0, len(pairs), 2))


GDAS_V1 = NASNetGenotype(
    normal=_steps(("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
                  ("sep_conv_3x3", 3), ("skip_connect", 0), ("sep_conv_5x5", 4), ("sep_conv_3x3", 3)),
    normal_concat=(2, 3, 4, 5),
    reduce=_steps(("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("sep_conv_5x5", 2), ("sep_conv_5x5", 1),
                  ("dil_conv_5x5", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_5x5", 1)),
    reduce_concat=(2, 3, 4, 5),
)

DARTS_V1 = NASNetGenotype(
    normal=_steps(("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                  ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=_steps(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                  ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)),
    reduce_concat=(2, 3, 4, 5),
)

DARTS_V2 = NASNetGenotype(
    normal=_steps(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                  ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=_steps(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                  ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=(2, 3, 4, 5),
)

SETN = NASNetGenotype(
    normal=_steps(("skip_connect", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 1),
                  ("sep_conv_5x5", 1), ("sep_conv_5x5", 3), ("max_pool_3x3", 1), ("conv_3x1_1x3", 4)),
    normal_concat=(2, 3, 4, 5),
    reduce=_steps(("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("avg_pool_3x3", 0), ("sep_conv_5x5", 1),
                  ("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("avg_pool_3x3", 0), ("skip_connect", 1)),
    reduce_concat=(2, 3, 4, 5),
)

NASNET = NASNetGenotype(
    normal=_steps(("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
                  ("avg_pool_3x3", 1), ("skip_connect", 0), ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
                  ("sep_conv_3x3", 1), ("skip_connect", 1)),
    normal_concat=(2, 3, 4, 5, 6),
    reduce=_steps(("sep_conv_5x5", 1), ("sep_conv_7x7", 0), ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
                  ("avg_pool_3x3", 1), ("sep_conv_5x5", 0), ("skip_connect", 3), ("avg_pool_3x3", 2),
                  ("sep_conv_3x3", 2), ("max_pool_3x3", 1)),
    reduce_concat=(4, 5, 6),
)

_PNASNET_CELL = _steps(("sep_conv_5x5", 0), ("max_pool_3x3", 0), ("sep_conv_7x7", 1), ("max_pool_3x3", 1),
                       ("sep_conv_5x5", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 4), ("max_pool_3x3", 1),
                       ("sep_conv_3x3", 0), ("skip_connect", 1))
PNASNET = NASNetGenotype(normal=_PNASNET_CELL, normal_concat=(2, 3, 4, 5, 6),
                         reduce=_PNASNET_CELL, reduce_concat=(2, 3, 4, 5, 6))

PUBLISHED_GENOTYPES: dict[str, NASNetGenotype] = {
    "GDAS_V1": GDAS_V1,
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "DARTS": DARTS_V2,
    "SETN": SETN,
    "NASNet": NASNET,
    "PNASNet": PNASNET,
}


def get_genotype(name: str) -> NASNetGenotype:
    """A published genotype by name (case-insensitive): GDAS_V1, DARTS_V1, DARTS_V2 (= DARTS), SETN, NASNet, PNASNet."""
    by_folded_name = {known.lower(): genotype for known, genotype in PUBLISHED_GENOTYPES.items()}
    genotype = by_folded_name.get(name.strip().lower())
    if genotype is None:
        raise ArchError(f"unknown genotype name {name!r}; published genotypes: {', '.join(PUBLISHED_GENOTYPES)}")
    return genotype


_NUMERIC_WRAPPERS = {"float", "int", "float32", "float64", "tensor"}


def _literal(node: ast.AST) -> Any:
    """Evaluate the literal subset of Python found in printed genotypes, without executing anything.

    Besides plain literals it reads `range(a, b)`, keyword calls such as `Genotype(normal=...)` or `dict(...)` (as a
    dict of their keywords) and one-argument numeric wrappers like `np.float32(0.1)` or `tensor(0.1)`.
    """
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(key): _literal(value) for key, value in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, ast.Call):
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        args = [_literal(arg) for arg in node.args]
        if func == "range":
            return list(range(*args))
        if func in _NUMERIC_WRAPPERS and len(args) == 1:
            return args[0]
        if not args:
            return {keyword.arg: _literal(keyword.value) for keyword in node.keywords}
    raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")


_PRINTED_CELL = re.compile(r"^\s*(normal|reduce)\s*:\s*(.*?)\s*$")
_PRINTED_STEPS = re.compile(r"^(?P<steps>\|.*\|)\s+concat\s*=\s*(?P<concat>[\d,\s]+)$")


def _parse_printed_cell(name: str, text: str) -> tuple[list, list[int]] | tuple[None, None]:
    if text.startswith("fixed"):
        return None, None
    match = _PRINTED_STEPS.match(text)
    if match is None:
        raise ArchError(f"cannot read the {name} cell {text!r}; expected "
                        f"'|op~input|op~input|+|...| concat=2,3,4,5'")
    steps = []
    for group in match["steps"].split("+"):
        pairs = []
        for entry in filter(None, group.strip().strip("|").split("|")):
            op, sep, node = entry.partition("~")
            if not sep or not node.strip().isdigit():
                raise ArchError(f"cannot read {entry!r} in the {name} cell; expected op~input, e.g. sep_conv_3x3~1")
            pairs.append((op.strip(), int(node)))
        steps.append(pairs)
    return steps, [int(n) for n in re.split(r"[,\s]+", match["concat"].strip())]


def _parse_printed(text: str) -> NASNetGenotype:
    """Read `str(NASNetGenotype)`: a `normal:` and a `reduce:` line (or the two separated by ';')."""
    cells: dict[str, tuple] = {}
    for line in re.split(r"[\n;]", text):
        if not line.strip():
            continue
        match = _PRINTED_CELL.match(line)
        if match is None:
            raise ArchError(f"cannot read the line {line.strip()!r}; expected 'normal: ...' or 'reduce: ...'")
        cells[match[1]] = _parse_printed_cell(match[1], match[2])
    if "normal" not in cells:
        raise ArchError("the printed genotype has no 'normal:' line")
    normal, normal_concat = cells["normal"]
    reduce, reduce_concat = cells.get("reduce", (None, None))
    return NASNetGenotype(normal, normal_concat, reduce, reduce_concat)


def _parse_text(text: str) -> NASNetGenotype:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = _parse_python_literal(stripped)
        return NASNetGenotype.from_dict(data)
    if stripped.startswith("Genotype("):
        return NASNetGenotype.from_dict(_parse_python_literal(stripped))
    if re.match(r"^\s*normal\s*:", stripped):
        return _parse_printed(stripped)
    raise ArchError(f"cannot read a NASNet genotype from {stripped[:80]!r}; expected a published name "
                    f"({', '.join(PUBLISHED_GENOTYPES)}), a JSON file, JSON text, or the printed form "
                    f"'normal: |op~input|op~input|+|...| concat=2,3,4,5' with a 'reduce:' line")


def _parse_python_literal(text: str) -> Any:
    try:
        return _literal(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, TypeError) as error:
        raise ArchError(f"cannot read the genotype text {text[:80]!r}: {error}") from None


def parse_genotype(source: str | Path | Mapping[str, Any] | NASNetGenotype) -> NASNetGenotype:
    """A genotype from a published name, a JSON file path, JSON/dict text, the printed form, or a dict."""
    if isinstance(source, NASNetGenotype):
        return source
    if isinstance(source, Mapping):
        return NASNetGenotype.from_dict(source)
    text = str(source).strip()
    if text.lower() in {name.lower() for name in PUBLISHED_GENOTYPES}:
        return get_genotype(text)
    if isinstance(source, Path) or _looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ArchError(f"{text!r} is neither a published genotype ({', '.join(PUBLISHED_GENOTYPES)}) nor an "
                            f"existing genotype file; give one of those names, a JSON file path or the genotype text")
        try:
            return _parse_text(path.read_text(encoding="utf-8"))
        except ArchError as error:
            raise ArchError(f"{path}: {error}") from None
    return _parse_text(text)


def _looks_like_path(text: str) -> bool:
    """Single-line text that does not start like any genotype text form is taken as a file path."""
    return "\n" not in text and not re.match(r"^(\{|Genotype\(|normal\s*:)", text)
