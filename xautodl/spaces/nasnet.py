"""The NASNet (DARTS) space: the search cell and supernet, the fixed GDAS-FRC reduction cell, the evaluation nets.

A cell takes two inputs (the outputs of the two previous cells), preprocesses both to C channels, and builds `steps`
nodes; node k = 2 + i (step i) sums operations applied to earlier nodes. The cell output concatenates the step nodes.
In a reduction cell, the edges leaving the two cell inputs have stride 2. Genotypes live in `genotypes.py`.

The module itself is the space's interface (`xautodl.spaces.SearchSpace`): `SPACE_NAME`, `OUTPUT_FOLDER`, `parse`,
`validate`, `build_supernet`, `build_inference_net`, `network_channels`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchError
from .genotypes import SPACE_NAME, CellGenotype, NASNetGenotype, parse_genotype  # noqa: F401 (SPACE_NAME: the interface)
from .ops import DARTS_OPS, OPS, FactorizedReduce, NodeInput, ReLUConvBN, canonical_op_name

OUTPUT_FOLDER = "search-cell-darts"  # the original tool's name for this space's search runs
FRC_GROUPS = 8

# The space interface of DESIGN.md.
parse = parse_genotype


def validate(genotype: NASNetGenotype | str | Mapping[str, Any]) -> NASNetGenotype:
    """The genotype given as a value object, a name / file / text, or a dict form; ArchError if invalid."""
    return parse_genotype(genotype)


def stage_plan(C: int, N: int, normal_after_reduction: int) -> list[tuple[int, bool]]:
    """(channels, is a reduction cell) of every cell: N normal, reduction at 2C, more normal, reduction at 4C, more."""
    return ([(C, False)] * N + [(2 * C, True)] + [(2 * C, False)] * normal_after_reduction
            + [(4 * C, True)] + [(4 * C, False)] * normal_after_reduction)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability `drop_prob` and scale the kept ones by 1 / keep (no host sync)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask.div_(keep)  # one pass over x: the 1 / keep scale rides on the per-sample mask


def preprocess_s0(C_prev_prev: int, C: int, reduction_prev: bool, affine: bool, track: bool) -> nn.Module:
    """Bring the older cell input to C channels; after a reduction it also has twice the resolution of s1."""
    if reduction_prev:
        return FactorizedReduce(C_prev_prev, C, 2, affine, track)
    return ReLUConvBN(C_prev_prev, C, 1, 1, 0, 1, affine, track)


def _conv_branch(C: int, affine: bool, track: bool) -> nn.Sequential:
    """FRC branch: ReLU, grouped 1x3 (stride 1,2) and 3x1 (stride 2,1) convs, BN, ReLU, 1x1 conv, BN.

    Without affine BN the convs carry a bias, as in the original. Unlike the biases the original puts before the
    BN of every affine-free op (which BN cancels exactly), the first one here matters: the 3x1 conv after it
    zero-pads, so that bias does not reach the border rows evenly.
    """
    bias = not affine
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 3), stride=(1, 2), padding=(0, 1), groups=FRC_GROUPS, bias=bias),
        nn.Conv2d(C, C, (3, 1), stride=(2, 1), padding=(1, 0), groups=FRC_GROUPS, bias=bias),
        nn.BatchNorm2d(C, affine=affine, track_running_stats=track),
        nn.ReLU(inplace=True),  # overwrites only the BN output above, which BN's backward does not need
        nn.Conv2d(C, C, 1, bias=bias),
        nn.BatchNorm2d(C, affine=affine, track_running_stats=track),
    )


def _pool_branch(C: int, affine: bool, track: bool) -> nn.Sequential:
    return nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1),
                         nn.BatchNorm2d(C, affine=affine, track_running_stats=track))


class FixedReductionCell(nn.Module):
    """The hand-designed reduction cell of GDAS-FRC (GDAS paper, Fig. 3): 4C channels at half resolution.

    Branches A (on s0) and B (on s1) are grouped-conv stacks, C and D are max-pool + BN on s0 and s1; the output
    concatenates A, B, C, D. In the GDAS-FRC search supernet it takes the search cells' `affine` flag (False), as
    the original does; in an evaluation net its BN is affine.
    """

    reduction = True

    def __init__(self, C_prev_prev: int, C_prev: int, C: int, reduction_prev: bool = False, affine: bool = True,
                 track: bool = True):
        super().__init__()
        if C % FRC_GROUPS:
            raise ArchError(f"the fixed reduction cell uses convolutions with {FRC_GROUPS} groups, so its channels "
                            f"must be a multiple of {FRC_GROUPS}; got {C}. Choose init channels C such that 2C and "
                            f"4C are multiples of {FRC_GROUPS} (e.g. C=16, 32 or 36)")
        self.preprocess0 = preprocess_s0(C_prev_prev, C, reduction_prev, affine, track)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, 1, affine, track)
        self.conv_branches = nn.ModuleList([_conv_branch(C, affine, track) for _ in range(2)])
        self.pool_branches = nn.ModuleList([_pool_branch(C, affine, track) for _ in range(2)])
        self.out_channels = 4 * C

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        inputs = (self.preprocess0(s0), self.preprocess1(s1))
        branches = [conv(x) for conv, x in zip(self.conv_branches, inputs)]
        branches += [pool(x) for pool, x in zip(self.pool_branches, inputs)]
        if self.training and drop_prob > 0:
            branches = [drop_path(b, drop_prob) for b in branches]
        return torch.cat(branches, dim=1)


def search_edges(steps: int) -> list[tuple[int, int]]:
    """(node, input) of the search cell's edges in alpha-row order: node 2+i takes inputs 0..1+i (14 for 4 steps)."""
    return [(2 + step, source) for step in range(steps) for source in range(2 + step)]


class NASNetSearchCell(nn.Module):
    """A search cell: every edge holds all candidate ops; an edge sample from the mixer decides how they mix."""

    def __init__(self, C_prev_prev: int, C_prev: int, C: int, reduction: bool, reduction_prev: bool,
                 steps: int = 4, multiplier: int = 4, ops: Sequence[str] = DARTS_OPS, affine: bool = False,
                 track: bool = True):
        super().__init__()
        self.reduction = reduction
        self.multiplier = multiplier
        self.preprocess0 = preprocess_s0(C_prev_prev, C, reduction_prev, affine, track)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, 1, affine, track)
        edges = search_edges(steps)
        self.edges = nn.ModuleList(
            nn.ModuleList(OPS[name](C, C, 2 if reduction and source < 2 else 1, affine, track) for name in ops)
            for _, source in edges)
        self.node_edges: list[list[tuple[int, int]]] = [  # per step: (edge index, input node)
            [(e, source) for e, (node, source) in enumerate(edges) if node == 2 + step] for step in range(steps)]
        self.out_channels = multiplier * C

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, sample: Any) -> torch.Tensor:
        # Each node computes its ReLU once for all the ops that start with one.
        nodes = [NodeInput(self.preprocess0(s0)), NodeInput(self.preprocess1(s1))]
        for inputs in self.node_edges:
            nodes.append(NodeInput(sample.node([(e, self.edges[e], nodes[source]) for e, source in inputs]), nodes))
        return torch.cat([node.value for node in nodes[-self.multiplier:]], dim=1)


class NASNetSupernet(nn.Module):
    """The NASNet-space search supernet of GDAS / DARTS (`configs/search-archs/GDAS-NASNet-CIFAR.config`).

    Stem conv 3x3 (3 -> stem_multiplier * C) + BN; N normal cells at C, a reduction cell at 2C, N-1 normal cells, a
    reduction at 4C, N-1 normal cells; global average pool; linear. All normal cells share `alpha_normal` and all
    reduction cells `alpha_reduce` (one row of op logits per edge); each forward asks the mixer for one sample per
    cell kind. With `fixed_reduction` (GDAS-FRC) the reduction cells are `FixedReductionCell`s and only the normal
    cell is searched. The classifier reads BN + ReLU of the last cell (`lastact`), as in the original.

    A GDAS edge here outputs h[chosen] * op_chosen(x) only, as the original's NASNet cell does: the alphas get their
    gradient through the chosen op's weight alone (the NAS-Bench-201 cell also adds the value-zero weights of the
    other ops). `unsampled_gradient=True` adds them here too (see docs/parity.md, "Where this differs").
    """

    def __init__(self, C: int, N: int, steps: int, multiplier: int, stem_multiplier: int, num_classes: int,
                 mixer: Any, ops: Sequence[str] = DARTS_OPS, affine: bool = False, track_running_stats: bool = True,
                 fixed_reduction: bool = False, unsampled_gradient: bool = False):
        super().__init__()
        self.op_names = tuple(canonical_op_name(op) for op in ops)
        if all(op == "none" for op in self.op_names):
            raise ArchError(f"supernet ops {list(ops)} need at least one op other than 'none'")
        if N < 1 or steps < 1 or not 1 <= multiplier <= steps:
            raise ArchError(f"need N >= 1, steps >= 1 and 1 <= multiplier <= steps; got N={N}, steps={steps}, "
                            f"multiplier={multiplier}")
        self.steps, self.multiplier = steps, multiplier
        self.mixer = mixer
        self.unsampled_gradient = unsampled_gradient
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        self.cells = nn.ModuleList()
        C_prev_prev, C_prev, reduction_prev = C_stem, C_stem, False
        for channels, reduction in stage_plan(C, N, N - 1):
            if reduction and fixed_reduction:
                cell = FixedReductionCell(C_prev_prev, C_prev, channels, reduction_prev, affine, track_running_stats)
            else:
                cell = NASNetSearchCell(C_prev_prev, C_prev, channels, reduction, reduction_prev, steps, multiplier,
                                        self.op_names, affine, track_running_stats)
            self.cells.append(cell)
            C_prev_prev, C_prev, reduction_prev = C_prev, cell.out_channels, reduction
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        num_edges = len(search_edges(steps))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(num_edges, len(self.op_names)))
        if fixed_reduction:
            self.register_parameter("alpha_reduce", None)
        else:
            self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(num_edges, len(self.op_names)))

    @property
    def fixed_reduction(self) -> bool:
        return self.alpha_reduce is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unsampled = self.unsampled_gradient
        normal_sample = self.mixer(self.alpha_normal, self.op_names, unsampled_gradient=unsampled)
        reduce_sample = None if self.fixed_reduction else self.mixer(self.alpha_reduce, self.op_names,
                                                                     unsampled_gradient=unsampled)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if isinstance(cell, FixedReductionCell):
                out = cell(s0, s1)
            else:
                out = cell(s0, s1, reduce_sample if cell.reduction else normal_sample)
            s0, s1 = s1, out
        return self.classifier(self.global_pooling(self.lastact(s1)).flatten(1))

    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters: alpha_normal, and alpha_reduce unless the reduction cell is fixed."""
        return [self.alpha_normal] if self.fixed_reduction else [self.alpha_normal, self.alpha_reduce]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter except the architecture parameters."""
        alpha_ids = {id(p) for p in self.alphas()}
        return [p for p in self.parameters() if id(p) not in alpha_ids]

    def set_tau(self, tau: float) -> None:
        """Set the mixer's Gumbel-softmax temperature."""
        self.mixer.tau = float(tau)

    def _derive_cell(self, alphas: torch.Tensor) -> tuple:
        """Per step, the 2 strongest distinct inputs, each with its best non-`none` op (DARTS / published GDAS rule).

        An input's strength is the largest softmax weight of a non-`none` op on its edge; ties keep the lower input.
        """
        probs = F.softmax(alphas.detach().float(), dim=-1).cpu().tolist()
        candidates = [k for k, name in enumerate(self.op_names) if name != "none"]
        edge_index = {edge: e for e, edge in enumerate(search_edges(self.steps))}
        steps = []
        for step in range(self.steps):
            ranked = []
            for source in range(2 + step):
                row = probs[edge_index[(2 + step, source)]]
                best = max(candidates, key=lambda k: row[k])
                ranked.append((-row[best], source, self.op_names[best]))
            ranked.sort(key=lambda item: (item[0], item[1]))
            steps.append(tuple((op, source) for _, source, op in ranked[:2]))
        return tuple(steps)

    def genotype(self) -> NASNetGenotype:
        """The derived architecture; its reduction cell is None when the supernet uses the fixed reduction cell.

        Per step it keeps the 2 strongest distinct inputs, each with its best non-`none` op, as DARTS and the
        published GDAS cells do (the original tool's code could pick two ops on one input, AutoDL-Projects #87).
        """
        concat = tuple(range(2 + self.steps - self.multiplier, 2 + self.steps))
        normal = self._derive_cell(self.alpha_normal)
        if self.fixed_reduction:
            return NASNetGenotype(normal, concat)
        return NASNetGenotype(normal, concat, self._derive_cell(self.alpha_reduce), concat)

    def alpha_table(self) -> dict[str, list[float]]:
        """softmax(alpha) of every edge, keyed 'normal:node<-input' / 'reduce:node<-input', in op_names order."""
        table = {}
        for kind, alphas in zip(("normal", "reduce"), self.alphas()):
            probs = F.softmax(alphas.detach(), dim=-1).cpu().tolist()
            edges = search_edges(self.steps)
            table.update({f"{kind}:{node}<-{source}": row for (node, source), row in zip(edges, probs)})
        return table


class NASNetInferCell(nn.Module):
    """A cell of a fixed genotype: every step sums its ops applied to its inputs; drop-path on non-identity ops."""

    def __init__(self, cell: CellGenotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = preprocess_s0(C_prev_prev, C, reduction_prev, True, True)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, 1)
        self.ops = nn.ModuleList()
        self.step_inputs: list[list[tuple[int, int]]] = []  # per step: (index in self.ops, input node)
        for step in cell.steps:
            inputs = []
            for op, source in step:
                inputs.append((len(self.ops), source))
                self.ops.append(OPS[op](C, C, 2 if reduction and source < 2 else 1, True, True))
            self.step_inputs.append(inputs)
        self.concat = cell.concat
        self.out_channels = len(cell.concat) * C

    def _edge(self, index: int, x: torch.Tensor, drop_prob: float) -> torch.Tensor:
        op = self.ops[index]
        out = op(x)
        if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
            out = drop_path(out, drop_prob)
        return out

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        nodes = [self.preprocess0(s0), self.preprocess1(s1)]
        for inputs in self.step_inputs:
            terms = [self._edge(k, nodes[source], drop_prob) for k, source in inputs]
            nodes.append(sum(terms[1:], terms[0]))
        return torch.cat([nodes[k] for k in self.concat], dim=1)


class AuxiliaryHead(nn.Sequential):
    """Auxiliary classifier after the second reduction (DARTS / NASNet): pool, 1x1 conv 128, 2x2 conv 768, linear.

    Pool stride 3 suits CIFAR's 8x8 maps, stride 2 ImageNet's 7x7; both leave 2x2 for the 2x2 convolution.
    """

    def __init__(self, C: int, num_classes: int, pool_stride: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(768, num_classes),
        )


class CIFARStem(nn.Module):
    """Conv 3x3 (3 -> C_out) + BN; both cell inputs of the first cell are its output."""

    def __init__(self, C_out: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, C_out, 3, padding=1, bias=False), nn.BatchNorm2d(C_out))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.conv(x)
        return s, s


class ImageNetStem(nn.Module):
    """DARTS's two stride-2 stems: stem0 gives s0 at 1/4 resolution, stem1 gives s1 at 1/8, both with C channels."""

    def __init__(self, C: int):
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


class _NASNetEvalNet(nn.Module):
    """A stem, the cells of a genotype (N normal, reduction, N normal, reduction, N normal), global pool, linear.

    The auxiliary head (if any) reads the output of the second reduction cell. `drop_path_prob` is set by the
    training loop (each epoch). forward returns (logits, aux_logits) in training mode with an auxiliary head,
    otherwise logits.
    """

    def __init__(self, genotype: NASNetGenotype | str, stem: nn.Module, C_stem: int, reduction_after_stem: bool,
                 C: int, N: int, num_classes: int, auxiliary: bool, aux_pool_stride: int):
        super().__init__()
        self.genotype = parse_genotype(genotype)
        self.drop_path_prob = 0.0
        self.stem = stem
        self.cells = nn.ModuleList()
        C_prev_prev, C_prev, reduction_prev = C_stem, C_stem, reduction_after_stem
        self.auxiliary_index, C_auxiliary = -1, C_prev
        for channels, reduction in stage_plan(C, N, N):
            self.cells.append(self._make_cell(C_prev_prev, C_prev, channels, reduction, reduction_prev))
            C_prev_prev, C_prev, reduction_prev = C_prev, self.cells[-1].out_channels, reduction
            if reduction:
                self.auxiliary_index, C_auxiliary = len(self.cells) - 1, C_prev
        self.auxiliary_head = AuxiliaryHead(C_auxiliary, num_classes, aux_pool_stride) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def _make_cell(self, C_prev_prev: int, C_prev: int, C: int, reduction: bool, reduction_prev: bool) -> nn.Module:
        if reduction and self.genotype.fixed_reduction:
            return FixedReductionCell(C_prev_prev, C_prev, C, reduction_prev)
        cell = self.genotype.reduce_cell if reduction else self.genotype.normal_cell
        return NASNetInferCell(cell, C_prev_prev, C_prev, C, reduction, reduction_prev)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0, s1 = self.stem(x)
        aux_logits = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if index == self.auxiliary_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if aux_logits is None else (logits, aux_logits)


class NASNetCIFAR(_NASNetEvalNet):
    """CIFAR evaluation net: stem conv 3x3 (3 -> stem_multiplier * C) + BN, 3N + 2 cells, auxiliary head."""

    def __init__(self, genotype: NASNetGenotype | str, C: int = 36, N: int = 6, stem_multiplier: int = 3,
                 num_classes: int = 10, auxiliary: bool = True):
        C_stem = stem_multiplier * C
        super().__init__(genotype, CIFARStem(C_stem), C_stem, False, C, N, num_classes, auxiliary, aux_pool_stride=3)


class NASNetImageNet(_NASNetEvalNet):
    """ImageNet evaluation net: two stride-2 stems, 3N + 2 cells (the first sees a reduced s1), auxiliary head."""

    def __init__(self, genotype: NASNetGenotype | str, C: int = 50, N: int = 4, num_classes: int = 1000,
                 auxiliary: bool = True):
        super().__init__(genotype, ImageNetStem(C), C, True, C, N, num_classes, auxiliary, aux_pool_stride=2)


_DATASET_KINDS = {"cifar": "cifar", "cifar10": "cifar", "cifar100": "cifar", "imagenet": "imagenet",
                  "imagenet-1k": "imagenet"}
_DEFAULT_CLASSES = {"cifar": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000, "imagenet-1k": 1000}


def network_channels(C: int, genotype: NASNetGenotype) -> int:
    """The init channels to build for `genotype`: C, rounded up for the fixed GDAS-FRC reduction cell when needed.

    The fixed reduction cell's grouped convolutions need its channels (2C and 4C) to be multiples of FRC_GROUPS,
    so a genotype without a reduction cell gets the next C that is a multiple of FRC_GROUPS / 2 (33 -> 36).
    """
    if not genotype.fixed_reduction:
        return C
    multiple = math.lcm(2, FRC_GROUPS) // 2
    return -(-C // multiple) * multiple


def build_inference_net(genotype: NASNetGenotype | str | Mapping[str, Any], C: int | None = None,
                        N: int | None = None, num_classes: int | None = None, *, dataset: str = "cifar",
                        stem_multiplier: int = 3, auxiliary: bool = True) -> NASNetCIFAR | NASNetImageNet:
    """The evaluation net of a genotype for `dataset` ("cifar", "cifar10", "cifar100", "imagenet", "imagenet-1k").

    C and N default to the published settings (CIFAR 36 / 6, ImageNet 50 / 4), num_classes to the dataset's.
    `stem_multiplier` applies to the CIFAR stem only (the ImageNet stems are fixed at C channels).
    """
    kind = _DATASET_KINDS.get(dataset.lower())
    if kind is None:
        raise ArchError(f"no NASNet evaluation net for dataset {dataset!r}; expected one of "
                        f"{', '.join(_DATASET_KINDS)}")
    genotype = validate(genotype)
    num_classes = num_classes or _DEFAULT_CLASSES[dataset.lower()]
    if kind == "cifar":
        return NASNetCIFAR(genotype, C or 36, N or 6, stem_multiplier, num_classes, auxiliary)
    return NASNetImageNet(genotype, C or 50, N or 4, num_classes, auxiliary)


def build_supernet(mixer: Any, num_classes: int, *, track_running_stats: bool = True,
                   model_config: Mapping[str, Any] | Any) -> NASNetSupernet:
    """The search supernet of a `configs/search-archs/*NASNet*.config` (C, N, steps, multiplier, stem_multiplier;
    name GDAS_FRC for the fixed reduction cell). Search cells use BN without affine, as in the original."""
    def value(key: str) -> Any:
        return model_config[key] if isinstance(model_config, Mapping) else getattr(model_config, key)

    return NASNetSupernet(int(value("C")), int(value("N")), int(value("steps")), int(value("multiplier")),
                          int(value("stem_multiplier")), num_classes, mixer, affine=False,
                          track_running_stats=track_running_stats, fixed_reduction=str(value("name")) == "GDAS_FRC")
