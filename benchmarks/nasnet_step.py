"""Worker of benchmarks/run.py: seconds per iteration of one NASNet-space case, ours or the reference, in an
isolated child process (see reference_env.py), printed as one JSON line.

Cases:
- `gdas` / `gdas-frc`: one search iteration (weight step + architecture step, as in search_step.py) of the NASNet
  supernet of configs/search-archs/GDAS(-FRC)-NASNet-CIFAR.config (C=16, N=2, 4 steps, multiplier 4, stem x3).
- `gdas_v1-train`: one training step (forward with the auxiliary head, backward, SGD step) of the GDAS_V1 CIFAR
  evaluation network (C=36, N=6, stem x3, auxiliary weight 0.4, drop-path 0.2), as basic-main trains it.

Ours runs in the layout the entry points choose by default (`--channels_last auto`: channels-last on CPU); the
reference in the only layout it had.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_env import enter_isolated_path, import_checked_xautodl  # noqa: E402

enter_isolated_path()
import torch  # noqa: E402
from torch import nn  # noqa: E402

DARTS_SPACE_ORIGINAL_NAMES = ["none", "skip_connect", "dua_sepc_3x3", "dua_sepc_5x5", "dil_sepc_3x3", "dil_sepc_5x5",
                              "avg_pool_3x3", "max_pool_3x3"]
WEIGHT_SGD = {"lr": 0.025, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}
ARCH_ADAM = {"lr": 3e-4, "betas": (0.5, 0.999), "weight_decay": 1e-3}


def ours_layout(model: nn.Module) -> tuple[nn.Module, torch.memory_format]:
    """Our model in the entry points' default layout, and the layout for the batches."""
    from xautodl.runtime.precision import use_channels_last

    if use_channels_last("auto", torch.device("cpu")):
        return model.to(memory_format=torch.channels_last), torch.channels_last
    return model, torch.contiguous_format


def ours_search(case: str):
    from xautodl.search.registry import build_algorithm
    from xautodl.search.mixing import GumbelHardMixer
    from xautodl.spaces.nasnet import NASNetSupernet

    model, layout = ours_layout(NASNetSupernet(16, 2, 4, 4, 3, 10, GumbelHardMixer(10.0, 0),
                                               fixed_reduction=case == "gdas-frc"))
    algo = build_algorithm("GDAS", model, nn.CrossEntropyLoss(), torch.optim.SGD(model.weights(), **WEIGHT_SGD),
                           torch.optim.Adam(model.alphas(), **ARCH_ADAM))

    def iteration(x, y):
        x = x.contiguous(memory_format=layout)  # as the search loop does with every batch
        algo.weight_step(x, y)
        algo.arch_step((x, y), (x, y))
    return iteration


def reference_search(case: str):
    from xautodl.models import get_cell_based_tiny_net

    net = get_cell_based_tiny_net({"super_type": "nasnet-super", "name": "GDAS_FRC" if case == "gdas-frc" else "GDAS",
                                   "C": 16, "N": 2, "steps": 4, "multiplier": 4, "stem_multiplier": 3,
                                   "num_classes": 10, "space": DARTS_SPACE_ORIGINAL_NAMES, "affine": False,
                                   "track_running_stats": True})
    net.set_tau(10.0)
    w_opt, a_opt = torch.optim.SGD(net.get_weights(), **WEIGHT_SGD), torch.optim.Adam(net.get_alphas(), **ARCH_ADAM)
    criterion = nn.CrossEntropyLoss()

    def iteration(x, y):
        net.zero_grad()
        criterion(net(x)[1], y).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5)
        w_opt.step()
        net.zero_grad()
        criterion(net(x)[1], y).backward()
        a_opt.step()
    return iteration


def train_step(model, forward, layout=torch.contiguous_format):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    criterion = nn.CrossEntropyLoss()
    model.drop_path_prob = 0.2 * 0.5

    def iteration(x, y):
        logits, aux_logits = forward(x.contiguous(memory_format=layout))  # as the training loop does
        loss = criterion(logits, y) + 0.4 * criterion(aux_logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return iteration


def ours_train():
    from xautodl.spaces.genotypes import get_genotype
    from xautodl.spaces.nasnet import NASNetCIFAR

    model, layout = ours_layout(NASNetCIFAR(get_genotype("GDAS_V1"), C=36, N=6, stem_multiplier=3, num_classes=10,
                                            auxiliary=True))
    return train_step(model, model, layout)


def reference_train():
    from xautodl.config_utils import dict2config
    from xautodl.nas_infer_model import obtain_nas_infer_model

    config = dict2config({"arch": "dxys", "genotype": "GDAS_V1", "dataset": "cifar", "ichannel": 36, "layers": 6,
                          "stem_multi": 3, "auxiliary": True, "class_num": 10}, None)
    model = obtain_nas_infer_model(config)
    return train_step(model, lambda x: model(x)[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("ours", "reference"), required=True)
    parser.add_argument("--case", choices=("gdas", "gdas-frc", "gdas_v1-train"), required=True)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    # The first two iterations fault in the process's memory (the kernel zeroes gigabytes of fresh pages, seconds of
    # system time); after them an iteration allocates nothing new. Time the steady state a long run lives in.
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    import_checked_xautodl()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.case == "gdas_v1-train":
        iteration = ours_train() if args.impl == "ours" else reference_train()
    else:
        iteration = ours_search(args.case) if args.impl == "ours" else reference_search(args.case)
    x, y = torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))
    for _ in range(args.warmup):
        iteration(x, y)
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        iteration(x, y)
        seconds.append(time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


if __name__ == "__main__":
    main()
