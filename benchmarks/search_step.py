"""Speed and peak memory of one NAS-Bench-201 search iteration: ours against the reference (PyPI xautodl==1.0.0).

    python benchmarks/search_step.py                          # CPU, GDAS / DARTS-V1 / DARTS-V2, ~3-4 min, 2 cores
    python benchmarks/search_step.py --device cuda --json out.json
    python benchmarks/search_step.py --algos GDAS --steps 10 --repeats 5 --threads 1
    python benchmarks/search_step.py --no_reference --profile --algos DARTS-V1   # where our step spends its time
    python benchmarks/search_step.py --tensorflow --algos GDAS      # ours against our TensorFlow GDAS (xautodl.tf)

One iteration = a weight step on a train batch (SGD nesterov, LR 0.025, momentum 0.9, wd 5e-4, gradient norm
clipped to 5) followed by an architecture step on a valid batch (Adam 3e-4, betas (0.5, 0.999), wd 1e-3), on the
supernet of C=16, N=5, 4 nodes, the five NAS-Bench-201 ops, search-cell BN with affine=False and
track_running_stats=True, 10 classes, 32x32 synthetic inputs (fixed seed), GDAS at tau 10.

- Ours is built the way `xautodl.commands.search.run` builds it (NB201Supernet + build_mixer + build_algorithm, the
  optimiser from the algorithm's shipped config) and stepped with `weight_step` then `arch_step`.
- The reference is `xautodl.models.get_cell_based_tiny_net` stepped the way the original search scripts did: backward,
  clip_grad_norm_(5), SGD step; backward, Adam step. Its DARTS-V2 architecture step is written here after the
  original's approach (a deep copy of the network holds the virtual weights w', then central finite differences).
- Each implementation of each algorithm runs in its own fresh child process (`-I -S` with an explicit sys.path, see
  reference_env.py: both packages are called `xautodl`). The two children of an algorithm are built, warmed up
  (`--warmup` iterations, not timed), then take turns for `--repeats` rounds of `--steps` timed iterations each, the
  order alternating so that drifting load from other processes hits both alike; the table shows the median round.
  Throughput counts search pairs: batch_size / seconds per iteration. Memory: on CPU the child's peak RSS
  (getrusage) and its growth during the iterations over the RSS once the model is built; on CUDA
  torch.cuda.max_memory_allocated and its growth over the memory allocated before the iterations.
  Logging (losses, accuracies) is left out on both sides.
- `--tensorflow` puts our TensorFlow implementation (`xautodl.tf`, GDAS and DARTS-V1) in the second column instead
  of the reference: built as `xautodl.commands.search_tf.run` builds it (initialised from the PyTorch supernet,
  float32) and stepped through the same `weight_step` / `arch_step` the search loop calls (torch batches in, each
  step's loss and logits back as torch tensors). TensorFlow gets `--threads` intra-op and inter-op threads; its
  first (warm-up) iteration traces the two `tf.function` steps, so its "step MiB" includes the traced graphs. Its
  CUDA memory is TensorFlow's own peak (`tf.config.experimental.get_memory_info`).
- On a CPU that other processes keep busy, torch's threads wait for one another at every kernel and the figures
  swing wildly: the header reports how busy the CPUs were, and `--threads 1` gives steadier ratios there.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # reference_env beside this file, no xautodl there
from reference_env import (REPO_ROOT, ReferenceUnavailable, enter_isolated_path, ensure_reference,  # noqa: E402
                           import_checked_xautodl, isolated_command)

enter_isolated_path()  # in a worker child: the chosen xautodl first, then this interpreter's site-packages
import torch  # noqa: E402
from torch import nn  # noqa: E402

ALGORITHMS = ("GDAS", "DARTS-V1", "DARTS-V2")
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
C, N, MAX_NODES, NUM_CLASSES, IMAGE_SIZE = 16, 5, 4, 10, 32
WEIGHT_SGD = {"lr": 0.025, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}
ARCH_ADAM = {"lr": 3e-4, "betas": (0.5, 0.999), "weight_decay": 1e-3}
GRAD_CLIP = 5.0
TAU = 10.0
HVP_RADIUS = 0.01
RESULT_PREFIX = "SEARCH_STEP_RESULT "
# Timed iterations per measurement when --steps is not given: a DARTS-V2 iteration costs several seconds on a
# 2-core CPU, a GDAS one far less and varying with the sampled ops, so GDAS gets more.
DEFAULT_STEPS = {"cpu": {"GDAS": 4, "DARTS-V1": 1, "DARTS-V2": 1},
                 "cuda": {"GDAS": 20, "DARTS-V1": 20, "DARTS-V2": 20}}

Batch = tuple[torch.Tensor, torch.Tensor]
Iteration = Callable[[Batch, Batch], None]


# ------------------------------------------------------------------------------------------------ our iteration
def build_ours(algo: str, device: torch.device, seed: int, channels_last: str = "auto") -> tuple[Iteration, int, bool]:
    """Our iteration, built like `xautodl.commands.search.run`, the number of weights, and whether it is channels-last.

    `channels_last` is the entry point's `--channels_last` setting (auto: channels-last on CPU, not on CUDA).
    """
    import_checked_xautodl()
    from xautodl.config_utils import load_config
    from xautodl.config_utils.defaults import search_config
    from xautodl.search.registry import build_algorithm, build_mixer
    from xautodl.runtime.precision import use_channels_last
    from xautodl.spaces.nas201 import NB201Supernet
    from xautodl.optim.optimizers import build_criterion, build_optimizer

    config_path = search_config(algo, "nas-bench-201")
    config = load_config(config_path)
    mixer = build_mixer(algo, tau=TAU, seed=seed)
    model = NB201Supernet(C, N, NUM_CLASSES, mixer, ops=NB201_OPS, max_nodes=MAX_NODES, affine=False,
                          track_running_stats=True).to(device)
    layout_channels_last = use_channels_last(channels_last, device)
    if layout_channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    w_optimizer = build_optimizer(config, model.weights())
    _check_hyperparameters(w_optimizer, WEIGHT_SGD, f"our {config_path}")
    a_optimizer = torch.optim.Adam(model.alphas(), **ARCH_ADAM)
    algorithm = build_algorithm(algo, model, build_criterion(config), w_optimizer, a_optimizer, grad_clip=GRAD_CLIP)
    _check_search_bn(model)

    def iteration(train: Batch, valid: Batch) -> None:
        algorithm.weight_step(*train)
        algorithm.arch_step(train, valid)

    return iteration, sum(p.numel() for p in model.weights()), layout_channels_last


# ----------------------------------------------------------------------------------- TensorFlow iteration
TF_ALGORITHMS = ("GDAS", "DARTS-V1")


def build_tensorflow(algo: str, device: torch.device, seed: int, channels_last: str = "off",
                     threads: int = 1) -> tuple[Iteration, int, bool]:
    """Our TensorFlow iteration (`xautodl.tf`), built like `xautodl.commands.search_tf.run`, the number of weights,
    and False (TensorFlow computes in NHWC whatever the torch layout)."""
    import_checked_xautodl()
    import xautodl.tf  # noqa: F401  before TensorFlow (see xautodl/tf/__init__.py)
    import tensorflow as tf
    from xautodl.config_utils import load_config
    from xautodl.config_utils.defaults import search_config
    from xautodl.spaces.nas201 import NB201Supernet
    from xautodl.tf.nas201 import TFSupernet
    from xautodl.tf.search import (GumbelNoise, TFSearch, TFSearchModel, TorchAdam, criterion_from_config,
                                   sgd_from_config)

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    config = load_config(search_config(algo, "nas-bench-201"))
    tf_device = "/GPU:0" if device.type == "cuda" else "/CPU:0"
    torch_net = NB201Supernet(C, N, NUM_CLASSES, None, ops=NB201_OPS, max_nodes=MAX_NODES, affine=False,
                              track_running_stats=True)
    with tf.device(tf_device):
        net = TFSupernet(C, N, NUM_CLASSES, op_names=NB201_OPS, max_nodes=MAX_NODES, track=True)
        net.load_state_dict(torch_net.state_dict())
        model = TFSearchModel(net, GumbelNoise(TAU, seed) if algo == "GDAS" else None)
        w_optimizer = sgd_from_config(config, model.weights())
        a_optimizer = TorchAdam(model.alphas(), ARCH_ADAM["lr"], betas=ARCH_ADAM["betas"],
                                weight_decay=ARCH_ADAM["weight_decay"])
    _check_hyperparameters(w_optimizer, WEIGHT_SGD, f"our TensorFlow {algo}")
    algorithm = TFSearch(model, criterion_from_config(config), w_optimizer, a_optimizer, grad_clip=GRAD_CLIP,
                         device=tf_device)

    def iteration(train: Batch, valid: Batch) -> None:
        algorithm.weight_step(*train)
        algorithm.arch_step(train, valid)

    return iteration, sum(int(v.shape.num_elements()) for v in model.weights()), False


def _tensorflow_gpu_peak_mib() -> float:
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


# ------------------------------------------------------------------------------------------ reference iteration
def build_reference(algo: str, device: torch.device, seed: int, channels_last: str = "off") -> tuple[Iteration, int, bool]:
    """The reference supernet stepped the way the original search scripts did, the number of weights, and False
    (the original always ran in the default layout; `channels_last` is ignored)."""
    import_checked_xautodl()
    from xautodl.models import get_cell_based_tiny_net

    net = get_cell_based_tiny_net({"name": algo, "C": C, "N": N, "max_nodes": MAX_NODES, "num_classes": NUM_CLASSES,
                                   "space": list(NB201_OPS), "affine": False, "track_running_stats": True})
    net = net.to(device)
    net.train()
    if algo == "GDAS":
        net.set_tau(TAU)
    _check_search_bn(net)
    w_optimizer = torch.optim.SGD(net.get_weights(), **WEIGHT_SGD)
    a_optimizer = torch.optim.Adam(net.get_alphas(), **ARCH_ADAM)
    criterion = nn.CrossEntropyLoss()

    def weight_step(train: Batch) -> None:
        net.zero_grad()
        _, logits = net(train[0])
        criterion(logits, train[1]).backward()
        nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
        w_optimizer.step()

    def first_order_arch_step(valid: Batch) -> None:
        net.zero_grad()
        _, logits = net(valid[0])
        criterion(logits, valid[1]).backward()
        a_optimizer.step()

    def iteration(train: Batch, valid: Batch) -> None:
        weight_step(train)
        if algo == "DARTS-V2":
            net.zero_grad()
            net.arch_parameters.grad = reference_unrolled_alpha_grad(net, criterion, w_optimizer, train, valid)
            a_optimizer.step()
        else:
            first_order_arch_step(valid)

    return iteration, sum(p.numel() for p in net.get_weights()), False


def reference_unrolled_alpha_grad(net: nn.Module, criterion: nn.Module, w_optimizer: torch.optim.SGD, train: Batch,
                                  valid: Batch) -> torch.Tensor:
    """DARTS-V2's alpha gradient in the original's style (REFERENCE section 4), for the reference network.

    w' = w - xi * (grad_w L_train + momentum * buffer + wd * w) lives in a deep copy of the network; the result is
    grad_a L_val(w') - xi * (grad_a L_train(w+) - grad_a L_train(w-)) / (2 r), w+- = w +- r * grad_w' L_val(w'),
    r = 0.01 / ||grad_w' L_val(w')||, the perturbations applied in place to the real network and undone after.
    """
    group = w_optimizer.param_groups[0]
    lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
    weights = net.get_weights()
    _, logits = net(train[0])
    grads = torch.autograd.grad(criterion(logits, train[1]), weights)
    with torch.no_grad():
        virtual = []
        for param, grad in zip(weights, grads):
            velocity = grad + decay * param
            buffer = w_optimizer.state.get(param, {}).get("momentum_buffer")
            if buffer is not None:
                velocity = velocity + momentum * buffer
            virtual.append(param - lr * velocity)
    unrolled = copy.deepcopy(net)
    with torch.no_grad():
        for param, value in zip(unrolled.get_weights(), virtual):
            param.copy_(value)
    unrolled.zero_grad()
    _, logits = unrolled(valid[0])
    criterion(logits, valid[1]).backward()
    direction = [param.grad for param in unrolled.get_weights()]
    radius = HVP_RADIUS / torch.cat([d.flatten() for d in direction]).norm().item()
    alpha_grads = []
    for shift in (radius, -2 * radius):  # to w + r d, then to w - r d
        with torch.no_grad():
            for param, d in zip(weights, direction):
                param.add_(d, alpha=shift)
        _, logits = net(train[0])
        alpha_grads.append(torch.autograd.grad(criterion(logits, train[1]), net.get_alphas())[0])
    with torch.no_grad():
        for param, d in zip(weights, direction):
            param.add_(d, alpha=radius)
    hessian_vector = (alpha_grads[0] - alpha_grads[1]) / (2 * radius)
    return unrolled.arch_parameters.grad - lr * hessian_vector


# --------------------------------------------------------------------------------------------------- checks
def _check_search_bn(model: nn.Module) -> None:
    """Every BN inside a search cell must be affine=False, track_running_stats=True (the compared setting)."""
    cells = [m for m in model.modules() if type(m).__name__.endswith("SearchCell")]
    norms = [m for cell in cells for m in cell.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms or any(bn.affine or not bn.track_running_stats for bn in norms):
        raise SystemExit(f"{type(model).__name__}: search-cell BN is not affine=False/track_running_stats=True")


def _check_hyperparameters(optimizer: torch.optim.Optimizer, expected: dict, source: str) -> None:
    group = optimizer.param_groups[0]
    differing = {k: (group[k], v) for k, v in expected.items() if group[k] != v}
    if differing:
        raise SystemExit(f"{source} gives optimiser settings {differing} (found, compared) unlike the reference's")


# ---------------------------------------------------------------------------------------------------- worker
def synthetic_pairs(count: int, batch_size: int, device: torch.device, seed: int,
                    channels_last: bool = False) -> list[tuple[Batch, Batch]]:
    """`count` (train, valid) batch pairs of normal images and uniform labels, the same for every implementation."""
    generator = torch.Generator().manual_seed(seed)
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def batch() -> Batch:
        x = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        y = torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator)
        return x.to(device, memory_format=layout), y.to(device)

    return [(batch(), batch()) for _ in range(count)]


def _memory_now(device: torch.device) -> float:
    """MiB: the process's peak RSS so far on CPU, the peak allocated CUDA memory so far on CUDA."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def serve(args: argparse.Namespace) -> None:
    """Worker child: build one implementation of one algorithm, then answer `run N` / `profile N` lines on stdin.

    Every answer is one RESULT_PREFIX line on stdout; the first (unasked) one says the model is built.
    """
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    tensorflow = args.worker == "tensorflow"
    if tensorflow:  # batches stay on the host: the TensorFlow steps receive them as the search loop hands them over
        iteration, num_weights, channels_last = build_tensorflow(args.algos[0], device, args.seed,
                                                                 threads=args.threads)
        device = torch.device("cpu")
    else:
        build = build_ours if args.worker == "ours" else build_reference
        iteration, num_weights, channels_last = build(args.algos[0], device, args.seed, args.channels_last)
    memory_now = _tensorflow_gpu_peak_mib if tensorflow and args.device.startswith("cuda") else (
        lambda: _memory_now(device))
    pairs = synthetic_pairs(2, args.batch_size, device, args.seed + 1, channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = memory_now()
    _answer({"weights": num_weights})
    done = 0
    for line in sys.stdin:
        command, count = line.split()
        batches = [pairs[(done + k) % len(pairs)] for k in range(int(count))]
        done += len(batches)
        if command == "profile":
            profile_iterations(iteration, batches, device)
            _answer({})
            continue
        load = os.getloadavg()[0]
        times = []
        for train, valid in batches:
            start = time.perf_counter()
            iteration(train, valid)
            _synchronize(device)
            times.append(time.perf_counter() - start)
        peak = memory_now()
        _answer({"iteration_seconds": times, "peak_mib": peak, "step_mib": peak - before, "load_average": load})


def _answer(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def profile_iterations(iteration: Iteration, batches: list[tuple[Batch, Batch]], device: torch.device) -> None:
    """Print torch.profiler's table of the iterations over `batches` to stderr, heaviest self time first."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as profiler:
        for train, valid in batches:
            iteration(train, valid)
        _synchronize(device)
    wall = time.perf_counter() - start
    sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort_key, row_limit=30), file=sys.stderr)
    print(f"profiled {len(batches)} iterations: {wall:.2f} s wall (profiler overhead included)", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- parent
class Worker:
    """One implementation of one algorithm in its own isolated child process, driven line by line."""

    def __init__(self, impl: str, package_root: Path, algo: str, args: argparse.Namespace) -> None:
        self.name = f"{impl} {algo}"
        worker_args = ["--worker", impl, "--algos", algo, "--device", args.device, "--batch_size",
                       str(args.batch_size), "--threads", str(args.threads), "--seed", str(args.seed),
                       "--channels_last", args.channels_last]
        command, env = isolated_command(Path(__file__), worker_args, package_root)
        # stderr goes to a file (a pipe nobody reads could fill up), or straight through when profiling.
        self.stderr = None if args.profile else tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, cwd=REPO_ROOT)
        self.info = self.read_answer()

    def read_answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX):])
        self.process.wait()
        message = ""
        if self.stderr is not None:
            self.stderr.seek(0)
            message = self.stderr.read().strip()
        raise SystemExit(f"the {self.name} worker failed (exit {self.process.returncode}):\n{message}")

    def request(self, command: str, count: int) -> dict:
        self.process.stdin.write(f"{command} {count}\n")
        self.process.stdin.flush()
        return self.read_answer()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.stderr is not None:
            self.stderr.close()


def measure_algorithm(algo: str, args: argparse.Namespace, implementations: dict[str, Path]) -> dict[str, list[dict]]:
    """Rounds of timed iterations of `algo`, one live worker per implementation taking turns.

    The workers start together (building is not timed), each warms up, then in every round each runs
    `timed_steps` iterations, the order alternating between rounds so that drifting load hits both alike.
    """
    steps = timed_steps(args, algo)
    workers: dict[str, Worker] = {}
    try:
        for impl, root in implementations.items():
            workers[impl] = Worker(impl, root, algo, args)
        for worker in workers.values():
            worker.request("run", args.warmup)
        samples: dict[str, list[dict]] = {impl: [] for impl in workers}
        names = list(workers)
        for round_index in range(args.repeats):
            for impl in names if round_index % 2 == 0 else names[::-1]:
                answer = workers[impl].request("run", steps)
                sample = dict(answer, weights=workers[impl].info["weights"], steps=steps,
                              images_per_s=steps * args.batch_size / sum(answer["iteration_seconds"]))
                samples[impl].append(sample)
                print(f"  round {round_index + 1}/{args.repeats} {algo:8s} {impl:9s} "
                      f"{sample['images_per_s']:8.1f} images/s  {sum(answer['iteration_seconds']) / steps:7.2f} s/it  "
                      f"step +{sample['step_mib']:.0f} MiB  load {sample['load_average']:.1f}", file=sys.stderr,
                      flush=True)
        if args.profile:
            for impl, worker in workers.items():
                print(f"--- profile: {impl} {algo}, {steps} iterations", file=sys.stderr, flush=True)
                worker.request("profile", steps)
        return samples
    finally:
        for worker in workers.values():
            worker.close()


def summarise(samples: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """Per algorithm and implementation: median throughput over the rounds, the worker's peak memory, ratios."""
    rows = []
    for algo, by_impl in samples.items():
        row: dict = {"algo": algo}
        for impl, runs in by_impl.items():
            row[impl] = {
                "images_per_s": statistics.median(run["images_per_s"] for run in runs),
                "images_per_s_rounds": [round(run["images_per_s"], 3) for run in runs],
                "iteration_seconds": [round(t, 4) for run in runs for t in run["iteration_seconds"]],
                "peak_mib": max(run["peak_mib"] for run in runs),
                "step_mib": max(run["step_mib"] for run in runs),
                "weights": runs[0]["weights"],
                "steps_per_round": runs[0]["steps"],
                "load_average": [round(run["load_average"], 2) for run in runs],
            }
        other = next((impl for impl in ("reference", "tensorflow") if impl in row), None)
        if other:
            row["speed_ratio"] = row["ours"]["images_per_s"] / row[other]["images_per_s"]
            row["step_memory_ratio"] = row["ours"]["step_mib"] / max(row[other]["step_mib"], 1e-9)
            row["peak_memory_ratio"] = row["ours"]["peak_mib"] / row[other]["peak_mib"]
        rows.append(row)
    return rows


def format_table(rows: list[dict], memory_kind: str, other: str = "reference") -> str:
    """The result table: throughput, memory growth during the iterations and the process peak, with ratios of ours
    to the `other` column (the reference, or the TensorFlow implementation)."""
    short = {"reference": "ref", "tensorflow": "tf"}[other]
    def cell(row: dict, impl: str, key: str, width: int, digits: int) -> str:
        return f"{row[impl][key]:{width}.{digits}f}" if impl in row else f"{'-':>{width}s}"

    def ratio(row: dict, key: str) -> str:
        return f"{row[key]:8.2f}x" if key in row else f"{'-':>9s}"

    header = (f"{'algorithm':10s} | {'images/s ours':>13s} {other:>10s} {'ours/' + short:>9s} | "
              f"{'step MiB ours':>13s} {other:>10s} {'ours/' + short:>9s} | "
              f"{memory_kind + ' MiB ours':>17s} {other:>10s}")
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['algo']:10s} | {cell(row, 'ours', 'images_per_s', 13, 2)} "
            f"{cell(row, other, 'images_per_s', 10, 2)} {ratio(row, 'speed_ratio')} | "
            f"{cell(row, 'ours', 'step_mib', 13, 0)} {cell(row, other, 'step_mib', 10, 0)} "
            f"{ratio(row, 'step_memory_ratio')} | {cell(row, 'ours', 'peak_mib', 17, 0)} "
            f"{cell(row, other, 'peak_mib', 10, 0)}")
    return "\n".join(lines)


def timed_steps(args: argparse.Namespace, algo: str) -> int:
    """Timed iterations per round for `algo`: --steps, else the device's default."""
    if args.steps is not None:
        return args.steps
    return DEFAULT_STEPS["cuda" if args.device.startswith("cuda") else "cpu"][algo]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="cpu", help="cpu or cuda")
    add("--algos", default=",".join(ALGORITHMS), help="comma-separated subset of GDAS,DARTS-V1,DARTS-V2")
    add("--steps", type=int, default=None,
        help="timed iterations per round (default: cpu GDAS 4, DARTS-V1/V2 1; cuda 20)")
    add("--warmup", type=int, default=None, help="untimed iterations before the rounds (default: cpu 1, cuda 5)")
    add("--repeats", type=int, default=None, help="rounds, the median is shown (default: cpu 2, cuda 5)")
    add("--batch_size", type=int, default=64)
    add("--threads", type=int, default=None, help="torch threads (default: torch's own choice, the core count)")
    add("--seed", type=int, default=0)
    add("--json", type=Path, default=None, help="also write the results to this JSON file")
    add("--no_reference", action="store_true", help="measure ours only")
    add("--channels_last", choices=("auto", "on", "off"), default="auto",
        help="our layout, as the entry points' flag: auto (default) = channels-last on CPU, not on CUDA")
    add("--profile", action="store_true", help="after the rounds, print a torch.profiler table per worker")
    add("--tensorflow", action="store_true",
        help="compare ours with our TensorFlow implementation (xautodl.tf; GDAS, DARTS-V1) instead of the reference")
    add("--worker", choices=("ours", "reference", "tensorflow"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    args.algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = [a for a in args.algos if a not in ALGORITHMS]
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {', '.join(ALGORITHMS)}")
    if args.tensorflow and not args.worker:
        args.algos = [a for a in args.algos if a in TF_ALGORITHMS] or parser.error(
            f"--tensorflow compares {', '.join(TF_ALGORITHMS)} only")
    args.warmup = args.warmup if args.warmup is not None else (5 if on_cuda else 1)
    args.repeats = args.repeats if args.repeats is not None else (5 if on_cuda else 2)
    args.threads = args.threads or torch.get_num_threads()
    if on_cuda and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return args


def _tensorflow_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("tensorflow")
    except Exception:  # noqa: BLE001  (metadata missing: report nothing rather than fail after the measurement)
        return None


def busy_cpu_share(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy during `seconds` (from /proc/stat; None where that is missing)."""
    def totals() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    try:
        total_before, idle_before = totals()
        time.sleep(seconds)
        total_after, idle_after = totals()
    except OSError:
        return None
    return 1.0 - (idle_after - idle_before) / max(total_after - total_before, 1)


def print_header(args: argparse.Namespace, device_name: str, load: float, busy: float | None) -> None:
    steps = ", ".join(f"{algo} {timed_steps(args, algo)}" for algo in args.algos)
    busy_text = "" if busy is None else f" | CPUs {busy:.0%} busy before the start"
    print(f"torch {torch.__version__} | device {args.device} ({device_name}) | {args.threads} torch threads | "
          f"{os.cpu_count()} cpus | load average {load:.2f}{busy_text}")
    print(f"batch {args.batch_size}, {args.warmup} warm-up iteration(s), then {args.repeats} rounds of timed "
          f"iterations ({steps}) taken in turns; median shown"
          + f" | ours: --channels_last {args.channels_last}", flush=True)
    if args.device == "cpu" and args.threads > 1 and busy is not None and busy > 0.2:
        print(f"warning: other processes keep {busy:.0%} of the CPUs busy. Torch's threads wait for each other at "
              f"every kernel, so a busy machine slows {args.threads} threads far more than 1: rerun when idle, or "
              f"compare with --threads 1.", file=sys.stderr)


def main() -> None:
    args = parse_args()
    if args.worker:
        serve(args)
        return
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    load_before = os.getloadavg()[0]
    busy = busy_cpu_share()
    print_header(args, device_name, load_before, busy)
    implementations = {"ours": REPO_ROOT}
    if args.tensorflow:
        implementations["tensorflow"] = REPO_ROOT
    elif not args.no_reference:
        try:
            implementations["reference"] = ensure_reference()
        except ReferenceUnavailable as error:
            print(f"reference columns skipped: {error}", file=sys.stderr)
    started = time.perf_counter()
    rows = summarise({algo: measure_algorithm(algo, args, implementations) for algo in args.algos})
    memory_kind = "CUDA peak" if args.device.startswith("cuda") else "peak RSS"
    load_after = os.getloadavg()[0]
    print(format_table(rows, memory_kind, "tensorflow" if args.tensorflow else "reference"))
    print(f"images/s = search pairs per second (each iteration: one train and one valid batch). step MiB = memory "
          f"growth over the built model during the iterations. Load average after: {load_after:.2f}; "
          f"{time.perf_counter() - started:.0f} s.")
    differing = [row for row in rows if "reference" in row and row["ours"]["weights"] != row["reference"]["weights"]]
    if differing:
        ours, reference = differing[0]["ours"]["weights"], differing[0]["reference"]["weights"]
        print(f"note: weights ours {ours:,}, reference {reference:,}: the reference's search-cell convs carry a "
              f"bias (redundant before a BN) when affine=False")
    if args.json:
        report = {"torch": torch.__version__, "device": args.device, "device_name": device_name,
                  "threads": args.threads, "cpus": os.cpu_count(), "batch_size": args.batch_size,
                  "warmup": args.warmup, "repeats": args.repeats, "channels_last": args.channels_last,
                  "steps": {algo: timed_steps(args, algo) for algo in args.algos}, "memory": memory_kind,
                  "load_average_before": load_before, "busy_cpu_share_before": busy,
                  "load_average_after": load_after, "rows": rows,
                  "tensorflow": _tensorflow_version() if args.tensorflow else None}
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
