"""The NAS-Bench-201 (topology) space: arch strings, the inference network and the search supernet.

A cell has 4 nodes: node 0 is the cell input, node i >= 1 sums one edge from every earlier node, and the cell
outputs its last node. Each of the 6 edges carries one of five ops (`NB201_OPS`). An architecture is written
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`: one `+`-separated group per node 1..3, each entry `op~j` the edge j -> i.

The module itself is the space's interface (`xautodl.spaces.SearchSpace`): `SPACE_NAME`, `OUTPUT_FOLDER`, `parse`,
`validate`, `build_supernet`, `build_inference_net`, `network_channels`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchError
from .ops import NB201_OPS, OPS, NodeInput, ReLUConvBN, parameter_free_share

SPACE_NAME = "nas-bench-201"
OUTPUT_FOLDER = "search-cell-nas-bench-201"
NUM_NODES = 4
# The benchmark's network: C=16 channels, N=5 cells per stage (the defaults of the search and of train-a-net).
DEFAULT_CHANNELS, DEFAULT_CELLS = 16, 5

KNOWN_ARCHS: dict[str, str] = {
    "resnet": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
}

Edge = tuple[str, int]  # (op name, input node)


def edge_list(max_nodes: int = NUM_NODES) -> list[tuple[int, int]]:
    """(node, input) of every edge in the canonical order: nodes 1..max_nodes-1, each with inputs 0..node-1."""
    return [(node, source) for node in range(1, max_nodes) for source in range(node)]


def _grammar(max_nodes: int) -> str:
    groups = ("|" + "|".join(f"op~{j}" for j in range(node)) + "|" for node in range(1, max_nodes))
    return (f"expected '{'+'.join(groups)}': one '+'-separated group per node 1..{max_nodes - 1}, holding one "
            f"'op~j' entry for every earlier node j (the edge j -> node); valid ops: {', '.join(NB201_OPS)}; "
            f"known names: {', '.join(KNOWN_ARCHS)}")


def _node_problem(node: int, edges: Sequence[Edge]) -> str | None:
    """What is wrong with the edges into `node`, or None when they form a valid NAS-Bench-201 node."""
    for op, source in edges:
        if op not in NB201_OPS:
            return f"unknown op {op!r}"
        if not 0 <= source < node:
            return f"input {source} of '{op}~{source}' must be below the node index {node}"
    sources = [source for _, source in edges]
    duplicated = sorted({source for source in sources if sources.count(source) > 1})
    if duplicated:
        return f"more than one edge from node(s) {duplicated}"
    missing = sorted(set(range(node)) - set(sources))
    if missing:
        return f"no edge from node(s) {missing}"
    return None


def _arch_string(nodes: Sequence[Sequence[Edge]]) -> str:
    return "+".join("|" + "".join(f"{op}~{source}|" for op, source in edges) for edges in nodes)


@dataclass(frozen=True)
class Arch:
    """A NAS-Bench-201 cell; `nodes[i - 1]` holds the (op, input) edges into node i, sorted by input.

    Equal and hashed by value; `str()` is the canonical arch string.
    """

    nodes: tuple[tuple[Edge, ...], ...]

    def __post_init__(self) -> None:
        nodes = tuple(tuple(sorted(((str(op), int(source)) for op, source in node), key=lambda edge: edge[1]))
                      for node in self.nodes)
        object.__setattr__(self, "nodes", nodes)
        if not nodes:
            raise ArchError(f"a NAS-Bench-201 cell needs at least one node; {_grammar(NUM_NODES)}")
        for node, edges in enumerate(nodes, start=1):
            problem = _node_problem(node, edges)
            if problem:
                raise ArchError(f"invalid NAS-Bench-201 cell {_arch_string(nodes)}: node {node}: {problem}; "
                                f"{_grammar(len(nodes) + 1)}")

    @property
    def max_nodes(self) -> int:
        """Number of nodes of the cell, the input node included (4 in NAS-Bench-201)."""
        return len(self.nodes) + 1

    def edge_ops(self) -> tuple[str, ...]:
        """The op of every edge, in `edge_list` order."""
        return tuple(op for edges in self.nodes for op, _ in edges)

    def parameter_free_share(self) -> float:
        """The share of the cell's edges whose op has no weights (`none`, `skip_connect`, `avg_pool_3x3`)."""
        return parameter_free_share(self.edge_ops())

    @classmethod
    def from_edge_ops(cls, ops: Sequence[str]) -> Arch:
        """The cell whose edges, in `edge_list` order, carry `ops`."""
        max_nodes = round((1 + math.sqrt(1 + 8 * len(ops))) / 2)
        if max_nodes * (max_nodes - 1) // 2 != len(ops):
            raise ArchError(f"{len(ops)} edge ops do not fill a cell: a cell of n nodes has n*(n-1)/2 edges (6 for 4)")
        ops_per_edge = iter(ops)
        return cls(tuple(tuple((next(ops_per_edge), source) for source in range(node))
                         for node in range(1, max_nodes)))

    def __str__(self) -> str:
        return _arch_string(self.nodes)

    def to_dict(self) -> dict[str, str]:
        """JSON-safe form, read back by `Arch.from_dict`."""
        return {"space": SPACE_NAME, "arch": str(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arch:
        """The cell stored by `to_dict`."""
        if data.get("space") != SPACE_NAME or not isinstance(data.get("arch"), str):
            raise ArchError(f"not a NAS-Bench-201 genotype: {dict(data)!r}; expected "
                            f"{{'space': '{SPACE_NAME}', 'arch': '<arch string>'}}")
        return parse_arch(data["arch"], max_nodes=None)


def _parse_group(node: int, group: str) -> tuple[list[Edge] | None, str | None]:
    """The edges written in one '+'-separated group, or the problem with its syntax."""
    if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
        return None, f"group {group!r} must start and end with '|'"
    edges = []
    for entry in group[1:-1].split("|"):
        if entry.count("~") != 1:
            return None, f"entry {entry!r} is not of the form 'op~input'"
        op, source = entry.split("~")
        if not (source.isascii() and source.isdigit()):
            return None, f"input {source!r} of entry {entry!r} is not a node number"
        edges.append((op, int(source)))
    return edges, _node_problem(node, edges)


def parse_arch(text: str, max_nodes: int | None = NUM_NODES) -> Arch:
    """Parse an arch string (or a known name such as 'resnet'); surrounding whitespace is ignored.

    `max_nodes` is the node count the cell must have (4 in NAS-Bench-201); None accepts any count.
    Raises ArchError naming the node at fault, the grammar and the valid ops.
    """
    if not isinstance(text, str):
        raise ArchError(f"an arch must be given as a string, got {type(text).__name__}")
    grammar = _grammar(max_nodes or NUM_NODES)
    cleaned = text.strip()
    cleaned = KNOWN_ARCHS.get(cleaned.lower(), cleaned)
    if not cleaned:
        raise ArchError(f"empty arch string; {grammar}")
    groups = cleaned.split("+")
    if max_nodes is not None and len(groups) != max_nodes - 1:
        raise ArchError(f"invalid arch string {text!r}: {len(groups)} node group(s), expected {max_nodes - 1}; "
                        f"{grammar}")
    nodes = []
    for node, group in enumerate(groups, start=1):
        edges, problem = _parse_group(node, group)
        if problem:
            raise ArchError(f"invalid arch string {text!r}: node {node}: {problem}; {grammar}")
        nodes.append(tuple(edges))
    return Arch(tuple(nodes))


def enumerate_archs() -> list[Arch]:
    """All 15,625 cells of the space: every op on every edge, the last edge varying fastest.

    This order is ours; NATS-Bench numbers the cells in its own order (see `xautodl.bench`).
    """
    return [Arch.from_edge_ops(ops) for ops in itertools.product(NB201_OPS, repeat=len(edge_list()))]


# The space interface of DESIGN.md.
parse = parse_arch


def validate(genotype: Arch | str | Mapping[str, Any]) -> Arch:
    """The cell given as an Arch, an arch string / known name, or a `to_dict()` dict; ArchError if invalid."""
    if isinstance(genotype, Arch):
        return genotype
    if isinstance(genotype, str):
        return parse_arch(genotype)
    if isinstance(genotype, Mapping):
        return Arch.from_dict(genotype)
    raise ArchError(f"cannot read a NAS-Bench-201 genotype from {type(genotype).__name__}; "
                    "give an arch string, an Arch or its to_dict() form")


class ResNetBlock(nn.Module):
    """ResNet basic block between stages: two ReLU-Conv3x3-BN, shortcut AvgPool2d(2) + Conv1x1 when striding."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        if stride == 1 and C_in == C_out:
            self.shortcut = nn.Identity()
        elif stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))
        else:
            raise ValueError(f"ResNetBlock supports stride 2, or stride 1 with C_in == C_out; got stride {stride}, "
                             f"{C_in} -> {C_out} channels")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def stage_plan(C: int, N: int) -> list[tuple[int, bool]]:
    """(channels, is the stride-2 ResNet block) of every layer after the stem: N cells, block, N cells, block, N."""
    return [(C, False)] * N + [(2 * C, True)] + [(2 * C, False)] * N + [(4 * C, True)] + [(4 * C, False)] * N


class _MacroNet(nn.Module):
    """The NAS-Bench-201 macro skeleton around cells built by `make_cell(channels)`."""

    def __init__(self, C: int, N: int, num_classes: int, make_cell: Callable[[int], nn.Module]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers, C_prev = [], C
        for channels, is_block in stage_plan(C, N):
            layers.append(ResNetBlock(C_prev, channels, 2) if is_block else make_cell(channels))
            C_prev = channels
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def _classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.lastact(features)).flatten(1))


class InferCell(nn.Module):
    """A cell of a fixed arch; `none` edges are not built since they only add zeros."""

    def __init__(self, arch: Arch, C: int):
        super().__init__()
        self.ops = nn.ModuleList()
        self.node_inputs: list[list[tuple[int, int]]] = []  # per node: (index in self.ops, input node)
        for edges in arch.nodes:
            inputs = []
            for op, source in edges:
                if op != "none":
                    inputs.append((len(self.ops), source))
                    self.ops.append(OPS[op](C, C, 1, True, True))
            self.node_inputs.append(inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for inputs in self.node_inputs:
            terms = [self.ops[k](nodes[source]) for k, source in inputs]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]


class TinyNetwork(_MacroNet):
    """NAS-Bench-201 inference network of one arch: C channels, N cells per stage, `num_classes` outputs."""

    def __init__(self, arch: Arch | str, C: int, N: int, num_classes: int):
        arch = validate(arch)
        super().__init__(C, N, num_classes, lambda channels: InferCell(arch, channels))
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self._classify(x)


def build_inference_net(genotype: Arch | str | Mapping[str, Any], C: int = DEFAULT_CHANNELS, N: int = DEFAULT_CELLS,
                        num_classes: int = 10) -> TinyNetwork:
    """The inference network of a genotype (Arch, arch string / name, or `to_dict()` form)."""
    return TinyNetwork(validate(genotype), C, N, num_classes)


def network_channels(C: int, genotype: Arch) -> int:
    """Every C builds in this space."""
    return C


class SearchCell(nn.Module):
    """A cell whose every edge holds all candidate ops; the edge sample decides how they mix."""

    def __init__(self, C: int, max_nodes: int, op_names: Sequence[str], affine: bool, track_running_stats: bool):
        super().__init__()
        edges = edge_list(max_nodes)
        self.edges = nn.ModuleList(
            nn.ModuleList(OPS[name](C, C, 1, affine, track_running_stats) for name in op_names) for _ in edges)
        self.node_edges: list[list[tuple[int, int]]] = [  # per node: (edge index, input node)
            [(e, source) for e, (target, source) in enumerate(edges) if target == node] for node in range(1, max_nodes)]

    def forward(self, x: torch.Tensor, sample: Any) -> torch.Tensor:
        nodes = [NodeInput(x)]  # each node computes its ReLU once for all the ops that start with one
        for inputs in self.node_edges:
            nodes.append(NodeInput(sample.node([(e, self.edges[e], nodes[source]) for e, source in inputs]), nodes))
        return nodes[-1].value


class NB201Supernet(_MacroNet):
    """The NAS-Bench-201 search supernet (GDAS / DARTS): TinyNetwork's macro with searched cells.

    The stem and the two ResNet blocks are ordinary layers with affine BN; the search cells' BN uses `affine` and
    `track_running_stats`. All cells share one architecture: `arch_parameters` (one row of op logits per edge) is
    turned into one edge sample per forward by `mixer(arch_parameters, op_names)`.
    """

    def __init__(self, C: int, N: int, num_classes: int, mixer: Any, ops: Sequence[str] = NB201_OPS,
                 max_nodes: int = NUM_NODES, affine: bool = False, track_running_stats: bool = True):
        unknown = [op for op in ops if op not in NB201_OPS]
        if unknown or not ops:
            raise ArchError(f"supernet ops {list(ops)} must be a non-empty subset of {list(NB201_OPS)}")
        op_names = tuple(ops)
        super().__init__(C, N, num_classes,
                         lambda channels: SearchCell(channels, max_nodes, op_names, affine, track_running_stats))
        self.op_names = op_names
        self.max_nodes = max_nodes
        self.mixer = mixer
        self.arch_parameters = nn.Parameter(1e-3 * torch.randn(len(edge_list(max_nodes)), len(self.op_names)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sample = self.mixer(self.arch_parameters, self.op_names)
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, sample) if isinstance(cell, SearchCell) else cell(x)
        return self._classify(x)

    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters."""
        return [self.arch_parameters]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter except the architecture parameters."""
        return [p for p in self.parameters() if p is not self.arch_parameters]

    def set_tau(self, tau: float) -> None:
        """Set the mixer's Gumbel-softmax temperature."""
        self.mixer.tau = float(tau)

    def genotype(self) -> Arch:
        """The cell with the highest-alpha op on every edge (`none` included, as NAS-Bench-201's search does)."""
        return self.genotype_of(self.arch_parameters.detach().argmax(dim=-1).tolist())

    def genotype_of(self, op_indices: Sequence[int]) -> Arch:
        """The cell whose edges carry the ops of indices `op_indices` (one per edge, in alpha-row order)."""
        return Arch.from_edge_ops([self.op_names[k] for k in op_indices])

    def alpha_table(self) -> dict[str, list[float]]:
        """softmax(alpha) of every edge, keyed 'node<-input', in op_names order (for logging)."""
        probs = F.softmax(self.arch_parameters.detach(), dim=-1).cpu().tolist()
        return {f"{node}<-{source}": row for (node, source), row in zip(edge_list(self.max_nodes), probs)}


def build_supernet(mixer: Any, num_classes: int, *, track_running_stats: bool = True, C: int = DEFAULT_CHANNELS,
                   N: int = DEFAULT_CELLS, max_nodes: int = NUM_NODES) -> NB201Supernet:
    """The search supernet (search cells' BN without affine, as in the original)."""
    return NB201Supernet(C, N, num_classes, mixer, max_nodes=max_nodes, affine=False,
                         track_running_stats=track_running_stats)
