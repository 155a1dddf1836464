"""The benchmark table: ours against the reference implementation (PyPI xautodl==1.0.0), one command.

    python benchmarks/run.py                 # CPU (about 10 minutes on 2 cores)
    python benchmarks/run.py --device cuda

    python benchmarks/run.py --rows tf       # ours against our TensorFlow GDAS only (needs the tf extra)

Rows: one NAS-Bench-201 search iteration of GDAS, DARTS-V1 and DARTS-V2 (benchmarks/search_step.py), one NASNet-space
search iteration of GDAS and GDAS-FRC and one GDAS_V1 training step (benchmarks/nasnet_step.py), and the CIFAR
training data pipeline against torchvision's per-image one (benchmarks/data_pipeline.py). Every number is the median
of several runs made in turns; images/s, peak memory (MiB) and the ratio ours / reference. Last, the share of this
machine's matrix-multiply peak (fp32 matmul measured in the same run) that our GDAS NB201 step achieves. Where
TensorFlow is installed, one more row (group `tf`): our GDAS NB201 search iteration against our TensorFlow one
(`search_step.py --tensorflow`), the TensorFlow figures in the reference columns.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from reference_env import REPO_ROOT, ReferenceUnavailable, ensure_reference, isolated_command  # noqa: E402

import torch  # noqa: E402

NASNET_CASES = {"NASNet GDAS": ("gdas", 64), "NASNet GDAS-FRC": ("gdas-frc", 64), "GDAS_V1 train": ("gdas_v1-train", 96)}


def matmul_peak_gflops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Median fp32 matrix-multiply throughput (GFLOP/s, 2 FLOPs per multiply-add) on `device`."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    rates = []
    for _ in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates[2:])


def gdas_iteration_gflop(batch_size: int) -> float:
    """FLOPs (2 per multiply-add, PyTorch's counter) of one GDAS NB201 iteration of ours, forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(REPO_ROOT))
    from xautodl.search.registry import build_algorithm
    from xautodl.search.mixing import GumbelHardMixer
    from xautodl.spaces.nas201 import NB201Supernet

    torch.manual_seed(0)
    model = NB201Supernet(16, 5, 10, GumbelHardMixer(10.0, 0))
    algo = build_algorithm("GDAS", model, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.weights(), lr=0.025),
                           torch.optim.Adam(model.alphas(), lr=3e-4))
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    totals = []
    for _ in range(5):  # the sampled cell changes the cost: average a few samples
        counter = FlopCounterMode(display=False)
        with counter:
            algo.weight_step(x, y)
            algo.arch_step((x, y), (x, y))
        totals.append(counter.get_total_flops() / 1e9)
    return statistics.mean(totals)


def _search_step(args, extra: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "search_step.json"
        command = [sys.executable, str(HERE / "search_step.py"), "--device", args.device, "--json", str(out), *extra]
        if args.repeats:
            command += ["--repeats", str(args.repeats)]
        subprocess.run(command, check=True, stdout=sys.stderr)
        data = json.loads(out.read_text())
    return data["rows"] if isinstance(data, dict) else data


def nb201_rows(args) -> list[dict]:
    rows = []
    for row in _search_step(args, []):
        rows.append({"name": f"NB201 {row['algo']}", **{impl: {"images_per_s": row[impl]["images_per_s"],
                                                                "peak_mib": row[impl]["peak_mib"]}
                                                         for impl in ("ours", "reference") if impl in row}})
    return rows


def tf_rows(args) -> list[dict]:
    """Our GDAS NB201 iteration against our TensorFlow one; TensorFlow in the reference columns."""
    rows = []
    for row in _search_step(args, ["--tensorflow", "--algos", "GDAS"]):
        rows.append({"name": f"NB201 {row['algo']} vs TensorFlow", "baseline": "xautodl.tf",
                     **{key: {"images_per_s": row[impl]["images_per_s"], "peak_mib": row[impl]["peak_mib"]}
                        for key, impl in (("ours", "ours"), ("reference", "tensorflow")) if impl in row}})
    return rows


def nasnet_rows(args, reference_site: Path | None) -> list[dict]:
    roots = {"ours": REPO_ROOT, **({"reference": reference_site} if reference_site else {})}
    rows = []
    for name, (case, batch) in NASNET_CASES.items():
        samples: dict[str, list[dict]] = {impl: [] for impl in roots}
        for round_index in range(args.repeats or 3):
            order = list(roots) if round_index % 2 == 0 else list(roots)[::-1]
            for impl in order:
                command, env = isolated_command(HERE / "nasnet_step.py", ["--impl", impl, "--case", case,
                                                                          "--batch_size", str(batch)], roots[impl])
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"the {impl} {case} worker failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
                samples[impl].append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = {"name": name}
        for impl, runs in samples.items():
            per_iteration = statistics.median(statistics.median(r["seconds"]) for r in runs)
            row[impl] = {"images_per_s": batch / per_iteration, "peak_mib": max(r["peak_mib"] for r in runs)}
        rows.append(row)
        print(f"  {name}: " + ", ".join(f"{impl} {row[impl]['images_per_s']:.1f} img/s" for impl in samples),
              file=sys.stderr, flush=True)
    return rows


def data_row(args) -> dict:
    command = [sys.executable, str(HERE / "data_pipeline.py"), "--device", args.device, "--repeats", "3"]
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rates = {m.group(1).strip(): float(m.group(2).replace(",", ""))
             for m in re.finditer(r"^(.+?)\s+([\d,]+)\s+[\d.]+x$", printed, re.MULTILINE)}
    ours = next(v for k, v in rates.items() if k.endswith("crop+flip"))
    baseline = next(v for k, v in rates.items() if k.startswith("torchvision"))
    return {"name": "data pipeline (CIFAR train)", "ours": {"images_per_s": ours, "peak_mib": float("nan")},
            "reference": {"images_per_s": baseline, "peak_mib": float("nan")}, "baseline": "torchvision per-image"}


def format_table(rows: list[dict]) -> str:
    header = f"{'row':28s} {'ours img/s':>11s} {'ref img/s':>10s} {'speed':>7s} {'ours MiB':>9s} {'ref MiB':>8s} {'mem':>6s}"
    lines = [header, "-" * len(header)]
    for row in rows:
        ours, ref = row["ours"], row.get("reference")
        speed = f"{ours['images_per_s'] / ref['images_per_s']:6.2f}x" if ref else f"{'-':>7s}"
        memory = (f"{ours['peak_mib'] / ref['peak_mib']:5.2f}x" if ref and ref["peak_mib"] == ref["peak_mib"]
                  else f"{'-':>6s}")
        ref_rate = f"{ref['images_per_s']:10.1f}" if ref else f"{'-':>10s}"
        ref_mem = f"{ref['peak_mib']:8.0f}" if ref and ref["peak_mib"] == ref["peak_mib"] else f"{'-':>8s}"
        ours_mem = f"{ours['peak_mib']:9.0f}" if ours["peak_mib"] == ours["peak_mib"] else f"{'-':>9s}"
        lines.append(f"{row['name']:28s} {ours['images_per_s']:11.1f} {ref_rate} {speed} {ours_mem} {ref_mem} {memory}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per row (median shown)")
    parser.add_argument("--json", type=Path, default=None)
    have_tf = importlib.util.find_spec("tensorflow") is not None
    parser.add_argument("--rows", default="nb201,nasnet,data" + (",tf" if have_tf else ""),
                        help="comma-separated groups of rows to measure: nb201, nasnet, data, tf (default all; tf "
                             "where TensorFlow is installed)")
    args = parser.parse_args()
    groups = {group.strip() for group in args.rows.split(",") if group.strip()}
    if not groups or groups - {"nb201", "nasnet", "data", "tf"}:
        parser.error(f"--rows takes nb201, nasnet, data and/or tf, got {args.rows!r}")
    if "tf" in groups and not have_tf:
        parser.error("--rows tf needs TensorFlow: pip install -e '.[tf]'")
    device = torch.device(args.device)
    try:
        reference_site = ensure_reference(quiet=True)
    except ReferenceUnavailable as error:
        print(f"reference unavailable ({error}); ours only", file=sys.stderr)
        reference_site = None
    peak = matmul_peak_gflops(device)
    rows = ((nb201_rows(args) if "nb201" in groups else [])
            + (nasnet_rows(args, reference_site) if "nasnet" in groups and device.type == "cpu" else [])
            + ([data_row(args)] if "data" in groups else [])
            + (tf_rows(args) if "tf" in groups else []))
    print(f"torch {torch.__version__} | device {device} | {torch.get_num_threads()} threads")
    print(format_table(rows))
    result = {"rows": rows, "matmul_peak_gflops": peak}
    if "nb201" in groups:
        gflop = gdas_iteration_gflop(64)
        gdas = rows[0]["ours"]["images_per_s"]
        achieved = gflop * gdas / 64
        print(f"matmul peak (fp32 {2048}^3): {peak:.1f} GFLOP/s | GDAS NB201 iteration: {gflop:.2f} GFLOP at "
              f"{gdas:.1f} img/s = {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of the matmul peak")
        result.update(gdas_gflop=gflop, gdas_share_of_peak=achieved / peak)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
