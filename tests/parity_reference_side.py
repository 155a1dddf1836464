"""The original library's side of `test_reference_parity.py`; run only as an isolated child process.

    python -I -S tests/parity_reference_side.py build CASES OUT   # build each case's model, save its weights
    python -I -S tests/parity_reference_side.py run CASES OUT     # load the weights given, run each case

The parent starts it with `benchmarks/reference_env.isolated_command`, so `import xautodl` is PyPI
`xautodl==1.0.0` (checked on import). CASES is a `torch.save`d list of case dicts (see `parity_protocol.py`); in the
run phase each case carries the `state` to load. OUT receives one result per case.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from reference_env import enter_isolated_path, import_checked_xautodl  # noqa: E402

enter_isolated_path()
sys.path.insert(0, str(HERE))  # parity_protocol; tests/ holds no package called xautodl
import_checked_xautodl()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from parity_protocol import run_controller_case, run_model_case  # noqa: E402

# Our op names -> the original's names in its search registry (models.cell_operations).
SEARCH_OP_NAMES = {"none": "none", "skip_connect": "skip_connect", "avg_pool_3x3": "avg_pool_3x3",
                   "max_pool_3x3": "max_pool_3x3", "nor_conv_1x1": "nor_conv_1x1", "nor_conv_3x3": "nor_conv_3x3",
                   "sep_conv_3x3": "dua_sepc_3x3", "sep_conv_5x5": "dua_sepc_5x5", "dil_conv_3x3": "dil_sepc_3x3",
                   "dil_conv_5x5": "dil_sepc_5x5"}
NB201_SPACE = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
DARTS_SPACE = ["none", "skip_connect", "dua_sepc_3x3", "dua_sepc_5x5", "dil_sepc_3x3", "dil_sepc_5x5",
               "avg_pool_3x3", "max_pool_3x3"]


class SampleRecorder:
    """Wraps `forward_gdas` of the first search cell of each kind to keep the op index every edge sampled."""

    def __init__(self, cells) -> None:
        self.samples: list[torch.Tensor] = []
        seen = set()
        for cell in cells:
            if hasattr(cell, "forward_gdas") and cell_kind(cell) not in seen:
                seen.add(cell_kind(cell))
                cell.forward_gdas = self._wrap(cell.forward_gdas)

    def _wrap(self, forward_gdas):
        def recorded(*args):
            self.samples.append(args[-1].detach().flatten().clone())
            return forward_gdas(*args)
        return recorded


def cell_kind(cell: nn.Module) -> bool:
    return bool(getattr(cell, "reduction", False))


def logits_of(output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The original's models return (features, logits) or (features, [logits, aux_logits])."""
    logits = output[1] if isinstance(output, tuple) else output
    if isinstance(logits, list):
        return logits[0], logits[1]
    return logits, None


def build(case: dict) -> tuple[nn.Module, SampleRecorder | None]:
    from xautodl.config_utils import dict2config

    kind = case["kind"]
    torch.manual_seed(0)
    recorder = None
    if kind == "tiny":
        from xautodl.models.cell_infers import TinyNetwork
        from xautodl.models.cell_searchs.genotypes import Structure

        model = TinyNetwork(case["C"], case["N"], Structure.str2structure(case["arch"]), case["classes"])
    elif kind == "nb201_super":
        from xautodl.models import get_cell_based_tiny_net

        model = get_cell_based_tiny_net(dict(name=case.get("reference_name", case["algo"]), C=case["C"], N=case["N"],
                                             max_nodes=4, num_classes=case["classes"], space=NB201_SPACE,
                                             affine=False, track_running_stats=case["track"]))
        if "mode" in case:
            select_architecture(model, case)
    elif kind == "controller":
        from xautodl.models.cell_searchs.search_model_enas_utils import Controller

        model = Controller(case["edges"], len(NB201_SPACE))
    elif kind == "nasnet_super":
        from xautodl.models import get_cell_based_tiny_net

        model = get_cell_based_tiny_net(dict(super_type="nasnet-super", name=case["name"], C=case["C"], N=case["N"],
                                             steps=4, multiplier=4, stem_multiplier=3, num_classes=case["classes"],
                                             space=DARTS_SPACE, affine=False, track_running_stats=case["track"]))
    elif kind == "infer":
        from xautodl.nas_infer_model import obtain_nas_infer_model

        config = dict2config(dict(arch="dxys", genotype=case["genotype"], dataset=case["dataset"], ichannel=case["C"],
                                  layers=case["N"], stem_multi=3, auxiliary=True, class_num=case["classes"]), None)
        model = obtain_nas_infer_model(config)
        model.update_drop_path(case["drop_prob"])
    elif kind == "op":
        if case["name"] in SEARCH_OP_NAMES:
            from xautodl.models.cell_operations import OPS

            model = OPS[SEARCH_OP_NAMES[case["name"]]](case["C_in"], case["C_out"], case["stride"], case["affine"],
                                                       True)
        else:  # ops only published genotypes use live in the evaluation nets' registry
            from xautodl.nas_infer_model.operations import OPS

            model = OPS[case["name"]](case["C_in"], case["C_out"], case["stride"], case["affine"])
    else:
        raise SystemExit(f"unknown case kind {kind!r}")
    if "tau" in case:
        model.set_tau(case["tau"])
    if kind in ("nb201_super", "nasnet_super") and "GDAS" in case.get("algo", case.get("name", "")):
        recorder = SampleRecorder(model.cells)
    return model.double(), recorder


def select_architecture(model: nn.Module, case: dict) -> None:
    """Put a weight-sharing supernet in the case's mode: "dynamic" computes `case["arch"]`, SETN's "joint" mixes
    every op with softmax(alpha)."""
    from xautodl.models.cell_searchs.genotypes import Structure

    arch = Structure.str2structure(case["arch"]) if case.get("arch") else None
    if case["algo"] == "SETN":
        model.set_cal_mode(case["mode"], arch)
    elif case["algo"] == "ENAS":
        model.update_arch(arch)
    else:  # RANDOM
        model.arch_cache = arch


def score_with_controller(controller: nn.Module, ops: list[int]):
    """The original controller's (log_prob, entropy, ops) with its draws replaced by `ops`, in order."""
    from torch.distributions.categorical import Categorical

    forced = iter(ops)
    draw = Categorical.sample
    Categorical.sample = lambda self, sample_shape=torch.Size(): torch.tensor([[next(forced)]])
    try:
        return controller()
    finally:
        Categorical.sample = draw


def conv_biases(model: nn.Module) -> list[str]:
    return [f"{name}.bias" if name else "bias" for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.bias is not None]


def genotypes(case: dict) -> list:
    """The original's genotype for each alpha draw: an arch string (NB201) or per step the (op, input) pairs."""
    model, _ = build({**case, "kind": "nb201_super" if case["space"] == "nb201" else "nasnet_super"})
    found = []
    for alphas in case["alphas"]:
        for parameter, values in zip(model.get_alphas(), alphas):
            parameter.data.copy_(values)
        genotype = model.genotype()
        if case["space"] == "nb201":
            found.append(genotype.tostr())
        else:
            found.append({kind: [[(op, int(source)) for op, source, _ in step] for step in genotype[kind]]
                          for kind in ("normal", "reduce") if kind in genotype})
    return found


def run(case: dict) -> dict:
    if case["kind"] == "genotypes":
        return {"genotypes": genotypes(case)}
    model, recorder = build(case)
    model.load_state_dict(case["state"])
    if case["kind"] == "controller":
        return run_controller_case(model, case, lambda c: score_with_controller(c, case["arch"]))
    return run_model_case(model, case, lambda m, x: logits_of(m(x)),
                          samples=lambda: recorder.samples if recorder else [])


def main() -> None:
    phase, cases_file, out_file = sys.argv[1:4]
    cases = torch.load(cases_file, weights_only=True)
    torch.set_num_threads(1)  # the same float sums as the parent, which runs one thread too
    if phase == "build":
        results = []
        for case in cases:
            if case["kind"] == "genotypes":
                results.append({})
                continue
            model, _ = build(case)
            results.append({"state": list(model.state_dict().items()), "conv_biases": conv_biases(model)})
    else:
        results = [run(case) for case in cases]
    torch.save(results, out_file)


if __name__ == "__main__":
    main()
