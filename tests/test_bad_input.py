"""Bad input: every mistake below ends in one clear message, a non-zero exit and no change to earlier results.

Each case runs a real bash driver in a subprocess, in a working directory that already holds results: a finished
tiny NAS-Bench-201 GDAS search (run for real through its driver) and the files of an earlier train-a-net and
basic-main run (small stand-ins). Every file there keeps its bytes and modification time; a failed attempt may only
add a log file. The wrong-argument-count cases of the NASNet drivers that tests/test_nasnet_drivers.py already
covers are not repeated here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fakedata import write_cifar10, write_split_file
from conftest import REPO
from xautodl.runtime import load_checkpoint
from xautodl.runtime.run_record import new_record
from xautodl.spaces.nas201 import enumerate_archs, parse_arch

TRAIN_A_NET = "scripts-search/NAS-Bench-201/train-a-net.sh"
NAS_INFER = "scripts/nas-infer-train.sh"
RETRAIN = "scripts/retrain-searched-net.sh"
NB201_SEARCHES = [f"scripts-search/{folder}/{algo}.sh" for folder in ("algos", "NAS-Bench-201-algos")
                  for algo in ("GDAS", "DARTS-V1", "DARTS-V2")]
NASNET_GDAS = "scripts-search/NASNet-space-search-by-GDAS.sh"
NASNET_FRC = "scripts-search/NASNet-space-search-by-GDAS-FRC.sh"
NASNET_DARTS = "scripts-search/NASNet-space-search-by-DARTS1V.sh"

# The earlier search: GDAS.sh cifar10 1 5 with a tiny supernet; the failing searches below use the same
# positional arguments, so they aim at the very run folder that holds its results.
SEARCH = "scripts-search/algos/GDAS.sh"
SEARCH_ARGS = ["cifar10", "1", "5"]
TINY_SEARCH = ["--channel", "2", "--num_cells", "1", "--epochs", "1", "--batch_size", "8", "--limit_batches", "2",
               "--split_file", "split.txt", "--device", "cpu", "--quiet"]
SEARCH_CHECKPOINT = "output/search-cell-nas-bench-201/GDAS-cifar10-BN1/checkpoint/seed-5-basic.pth"
TINY_TRAIN = ["--datasets", "cifar10", "--seeds", "777", "--epochs", "1", "--batch_size", "8", "--limit_batches", "1",
              "--device", "cpu", "--quiet"]
BAD_ARCH = "|nor_conv_3x3~0|+|skip~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def run_driver(workspace: Path, script: str, args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`bash <script> <args>` in `workspace`, with its tiny CIFAR-10 as $TORCH_HOME; `env` entries set to None are
    removed from the environment."""
    environment = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", NPROC="1",
                       TORCH_HOME=str(workspace / "torch_home"))
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return subprocess.run(["bash", str(REPO / script), *map(str, args)], cwd=workspace, env=environment,
                          capture_output=True, text=True, timeout=300)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root`: its bytes and modification time (ns)."""
    return {str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A working directory with data (complete, incomplete, corrupt, absent) and the results of earlier runs."""
    root = tmp_path_factory.mktemp("bad-input")
    write_cifar10(root / "torch_home" / "cifar.python", n_train=64, n_test=32)
    write_split_file(root / "split.txt", {"train": list(range(32)), "valid": list(range(32, 64))})
    incomplete = write_cifar10(root / "incomplete" / "cifar.python", n_train=64, n_test=32)
    (incomplete / "cifar-10-batches-py" / "data_batch_3").unlink()
    corrupt = write_cifar10(root / "corrupt" / "cifar.python", n_train=64, n_test=32)
    (corrupt / "cifar-10-batches-py" / "data_batch_3").write_bytes(bytes(range(256)) * 4)
    (root / "empty").mkdir()
    (root / "a-file").write_text("not a folder\n")
    configs = REPO / "xautodl" / "configs"
    for name, source, key, value in [("neg-lr.config", "nas-benchmark/algos/GDAS.config", "LR", "-0.1"),
                                     ("neg-epochs.config", "opts/NAS-CIFAR.config", "epochs", "-1"),
                                     ("neg-warmup.config", "opts/NAS-CIFAR.config", "warmup", "-2")]:
        config = json.loads((configs / source).read_text())
        config[key][1] = value
        (root / name).write_text(json.dumps(config))
    (root / "binary.bin").write_bytes(b"\xff\xfe\x00\x01 not text \xc3\x28")
    (root / "bad-split.txt").write_text('{"train": ["int", ["0", "1"]], "valid": ')

    done = run_driver(root, SEARCH, [*SEARCH_ARGS, *TINY_SEARCH])
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / SEARCH_CHECKPOINT).is_file()

    index = enumerate_archs().index(parse_arch("resnet"))
    earlier_net = root / "output" / "NAS-BENCH-201-4" / f"arch-{index:05d}-seed-777.json"
    earlier_net.parent.mkdir(parents=True)
    arch = str(parse_arch("resnet"))
    earlier_net.write_text(json.dumps(new_record(
        "train-a-net", run={"arch": arch}, seed=777, finished=True, epochs_done=0, total_epochs=0, seconds=0.0,
        args={}, section={"arch": arch, "datasets": {}})))
    earlier_infer = root / "output" / "nas-infer" / "cifar10-GDAS_V1-96" / "seed-1-summary.json"
    earlier_infer.parent.mkdir(parents=True)
    earlier_infer.write_text(json.dumps(new_record(
        "basic-main", run={"seed": 1}, seed=1, finished=False, epochs_done=0, total_epochs=2, seconds=0.0, args={},
        history=[], best={}, section={"genotype_name": "GDAS_V1"})))
    return root


@dataclass(frozen=True)
class Case:
    """A command that must fail: the driver, its arguments, environment changes (a value is a folder of the
    workspace, None unsets the variable), the exit status and the phrases its one-line message must hold
    ({searched_arch}: the cell the earlier search found)."""

    script: str
    args: list
    phrases: list[str]
    status: int = 1
    env: dict = field(default_factory=dict)


CASES = {
    "unknown dataset": Case(SEARCH, ["svhn", "1", "5", *TINY_SEARCH], ["invalid choice: 'svhn'", "'cifar10'"], 2),
    "TORCH_HOME unset": Case(TRAIN_A_NET, ["resnet", "4", "1", *TINY_TRAIN],
                             ["TORCH_HOME is not set", "export TORCH_HOME=", "--data_path"], env={"TORCH_HOME": None}),
    "data folder missing": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH],
                                ["cifar10 not found", "cifar-10-batches-py does not exist", "--data_path", "--download"],
                                env={"TORCH_HOME": "empty"}),
    "data folder incomplete": Case(NAS_INFER, ["cifar10", "GDAS_V1", "96", "1", "--device", "cpu", "--quiet"],
                                   ["cifar10 is incomplete", "lacks data_batch_3", "--download",
                                    "cifar-10-python.tar.gz"], env={"TORCH_HOME": "incomplete"}),
    "corrupt data file": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--data_path", "corrupt/cifar.python"],
                              ["data_batch_3 is corrupt", "replace it with a fresh copy"]),
    "invalid arch string": Case(TRAIN_A_NET, [BAD_ARCH, "4", "1", *TINY_TRAIN],
                                ["invalid arch string", "unknown op 'skip'", "valid ops: none, skip_connect"]),
    "unknown genotype name": Case(NAS_INFER, ["cifar10", "GDAS_V9", "96", "1"],
                                  ["unknown genotype 'GDAS_V9'", "GDAS_V1", "retrain-searched-net.sh"]),
    "search checkpoint of the other space": Case(
        RETRAIN, ["cifar10", "from-nb201", SEARCH_CHECKPOINT, "96", "1", "--device", "cpu", "--quiet"],
        ["comes from the NAS-Bench-201 space (its cell is {searched_arch})",
         "bash scripts-search/NAS-Bench-201/train-a-net.sh '{searched_arch}' 16 5"]),
    "batch size 0": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--batch_size", "0"],
                         ["argument --batch_size", "positive integer (1 or more), got 0", "--help"], 2),
    "negative batch size": Case(NAS_INFER, ["cifar10", "GDAS_V1", "-3", "1"],
                                ["argument --batch_size", "positive integer (1 or more), got -3"], 2),
    "epochs 0": Case(TRAIN_A_NET, ["resnet", "4", "1", *TINY_TRAIN, "--epochs", "0"],
                     ["argument --epochs", "positive integer (1 or more), got 0"], 2),
    "search output not writable": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--save_dir", "a-file/run"],
                                       ["cannot create the run directory a-file/run", "--save_dir"]),
    "training output not writable": Case(NAS_INFER, ["cifar10", "GDAS_V1", "96", "1", "--device", "cpu",
                                                     "--save_dir", "a-file/run"],
                                         ["cannot write the run log a-file/run/seed-1-log.txt", "--save_dir"]),
    "device absent": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--device", "cuda:99"],
                          ["device 'cuda:99' asked for", "--device cpu"]),
    # issue 16: values that trained nothing, or climbed the loss, are refused at start-up
    "search --channel 0": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--channel", "0"],
                               ["argument --channel", "positive integer (1 or more), got 0"], 2),
    "search negative --channel": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--channel", "-4"],
                                      ["argument --channel", "got -4"], 2),
    "negative --arch_learning_rate": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--arch_learning_rate", "-0.0003"],
                                          ["argument --arch_learning_rate", "expected a number >= 0, got -0.0003"], 2),
    "negative --arch_weight_decay": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--arch_weight_decay", "-1"],
                                         ["argument --arch_weight_decay", "expected a number >= 0, got -1"], 2),
    "--tau_max 0": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--tau_max", "0"],
                        ["argument --tau_max", "expected a positive number, got 0"], 2),
    "--tau_max nan": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--tau_max", "nan"],
                          ["argument --tau_max", "expected a positive number, got nan"], 2),
    "negative config LR": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--config_path", "neg-lr.config"],
                               ["neg-lr.config: LR is -0.1, but it is the learning rate, 0 or more",
                                "fix the config file"]),
    "config with negative epochs": Case(NAS_INFER, ["cifar10", "GDAS_V1", "96", "1", "--device", "cpu",
                                                    "--optim_config", "neg-epochs.config"],
                                        ["neg-epochs.config: epochs is -1, but it is the number of epochs, 1 or more"]),
    "config with negative warmup": Case(NAS_INFER, ["cifar10", "GDAS_V1", "96", "1", "--device", "cpu",
                                                    "--optim_config", "neg-warmup.config"],
                                        ["neg-warmup.config: warmup is -2, but it is the warm-up epochs, 0 or more"]),
    "binary file as a genotype": Case(RETRAIN, ["cifar10", "binary", "binary.bin", "96", "1", "--device", "cpu"],
                                      ["argument --genotype", "binary.bin is a binary file, not a genotype"], 2),
    "split file missing": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--split_file", "no-such-split.txt"],
                               ["split file 'no-such-split.txt' not found", "existing split file",
                                "configs/nas-benchmark/cifar-split.txt"]),
    "split file not JSON": Case(SEARCH, [*SEARCH_ARGS, *TINY_SEARCH, "--split_file", "bad-split.txt"],
                                ["bad-split.txt: invalid JSON", "a split file is a JSON object", '"train": ["int"']),
}

# Phrases a case's message must not hold (what misled before issue 16).
MISLEADING = {
    "split file missing": ["config file", "NAS-CIFAR.config"],
    "split file not JSON": ["config file", '"LR"'],
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_message_and_keeps_earlier_results(workspace, name):
    case = CASES[name]
    env = {key: str(workspace / value) if value else value for key, value in case.env.items()}
    before = snapshot(workspace / "output")
    done = run_driver(workspace, case.script, case.args, env)

    assert done.returncode == case.status, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    searched_arch = load_checkpoint(workspace / SEARCH_CHECKPOINT)["genotype"]["arch"]
    for phrase in case.phrases:
        assert phrase.format(searched_arch=searched_arch) in lines[0], (phrase, lines[0])
    for phrase in MISLEADING.get(name, []):
        assert phrase not in lines[0], (phrase, lines[0])

    after = snapshot(workspace / "output")
    assert {path: after.get(path) for path in before} == before, "an earlier result changed"
    added = set(after) - set(before)
    assert all(path.endswith("-log.txt") for path in added), added


# ------------------------------------------------------------------------------------ positional argument count
USAGE_CASES = [
    *[(script, ["cifar10", "1"]) for script in NB201_SEARCHES],
    *[(script, ["cifar10", "1", "-1", "7"]) for script in NB201_SEARCHES],
    (TRAIN_A_NET, ["resnet", "16", "5", "777"]),
    (NASNET_GDAS, ["cifar10", "1", "-1", "7"]),
    (NASNET_FRC, ["cifar10", "1", "-1", "7"]),
    (NASNET_DARTS, ["cifar10"]),
    (RETRAIN, ["cifar10", "name", "ckpt.pth", "96", "-1", "7"]),
]


@pytest.mark.parametrize("script, args", USAGE_CASES)
def test_wrong_number_of_positional_arguments_prints_the_usage_line(tmp_path, echo_python, script, args):
    done = run_driver(tmp_path, script, args, {"PYTHON": str(echo_python)})
    assert done.returncode == 1
    assert done.stderr.startswith("usage: bash scripts") and done.stderr.count("\n") == 1, done.stderr
    assert "<seed" in done.stderr or "<cells per stage" in done.stderr
    assert done.stdout == ""  # the entry point never started


# ------------------------------------------------------------------------------------------- under torchrun
TORCHRUN_CASES = {
    "bad flag": ([*SEARCH_ARGS, *TINY_SEARCH, "--channel", "0"], 2,
                 "error: argument --channel: expected a positive integer (1 or more), got 0 (see GDAS.py --help)"),
    "batch size the ranks cannot share": ([*SEARCH_ARGS, *TINY_SEARCH, "--batch_size", "16"], 1,
                                          "error: --batch_size 16 does not split evenly over 3 processes; use a "
                                          "multiple of 3"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TORCHRUN_CASES))
def test_under_torchrun_a_mistake_is_one_line_once_from_rank_0(workspace, name):
    """NPROC=3: three gloo processes on the CPU; the line comes once and torchrun adds no failure banner."""
    args, status, message = TORCHRUN_CASES[name]
    before = snapshot(workspace / "output")
    done = run_driver(workspace, SEARCH, args, {"NPROC": "3"})
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr and "FAILED" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [message]
    after = snapshot(workspace / "output")
    assert {path: after.get(path) for path in before} == before
