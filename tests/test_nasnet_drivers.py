"""The NASNet-space bash drivers: the command each builds, usage errors, and 1-epoch smoke runs on tiny data.

Smoke runs pass the real configs through the drivers and then a tiny `--model_config` (argparse keeps the last), so
the supernets and evaluation nets have a few channels and one cell per stage.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakedata import write_cifar10, write_split_file
from conftest import REPO
from xautodl.config_utils import load_config, resolve_config_path
from xautodl.errors import ConfigError
from xautodl.runtime import load_checkpoint
from xautodl.commands import basic_main
from xautodl.commands import search as cli
from xautodl.spaces.genotypes import GDAS_V1, NASNetGenotype

NAS_INFER = "scripts/nas-infer-train.sh"
RETRAIN = "scripts/retrain-searched-net.sh"
SEARCH_GDAS = "scripts-search/NASNet-space-search-by-GDAS.sh"
SEARCH_FRC = "scripts-search/NASNet-space-search-by-GDAS-FRC.sh"
SEARCH_DARTS = "scripts-search/NASNet-space-search-by-DARTS1V.sh"
SMALL = ["--batch_size", "8", "--limit_batches", "2", "--device", "cpu", "--quiet"]


def driver(script: str, args, cwd: Path, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, NPROC="1", OMP_NUM_THREADS="1", PYTHON=sys.executable)
    environment.update(env)
    return subprocess.run(["bash", str(REPO / script), *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


def entry_command(script: str, args, tmp_path: Path, echo_python: Path) -> list[str]:
    done = driver(script, args, tmp_path, PYTHON=str(echo_python))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def default_optim_config(command: list[str]) -> Path:
    """The optimisation config basic-main trains with for an entry command that names none (the original's)."""
    args = basic_main.build_parser().parse_args(command[1:])
    assert args.optim_config is None
    return Path(basic_main.load_configs(args)[1].source)


def pairs(command: list[str]) -> dict[str, str]:
    """The flags of an entry command (after the script path) as {flag: value}; a repeated flag keeps the last."""
    flags = command[1:]
    return dict(zip(flags[0::2], flags[1::2]))


@pytest.mark.parametrize("dataset, base", [("cifar10", "CIFAR"), ("cifar100", "CIFAR"), ("imagenet-1k", "IMAGENET")])
def test_nas_infer_train_command(tmp_path, echo_python, dataset, base):
    command = entry_command(NAS_INFER, [dataset, "GDAS_V1", 96, -1, "--epochs", 3], tmp_path, echo_python)
    assert command[0] == str(REPO / "exps" / "basic" / "basic-main.py")
    assert pairs(command) == {
        "--dataset": dataset, "--model_config": f"configs/archs/NAS-{base}-GDAS_V1.config",
        "--save_dir": f"output/nas-infer/{dataset}-GDAS_V1-96", "--batch_size": "96", "--rand_seed": "-1",
        "--epochs": "3"}
    assert resolve_config_path(pairs(command)["--model_config"]).is_file()
    assert default_optim_config(command) == resolve_config_path(f"configs/opts/NAS-{base}.config")


@pytest.mark.parametrize("dataset, base", [("cifar10", "CIFAR"), ("imagenet-1k", "IMAGENET")])
def test_retrain_searched_net_command(tmp_path, echo_python, dataset, base):
    checkpoint = "output/search-cell-darts/GDAS-cifar10-BN1/checkpoint/seed-945-basic.pth"
    command = entry_command(RETRAIN, [dataset, "gdas-searched", checkpoint, 96, -1], tmp_path, echo_python)
    assert command[0] == str(REPO / "exps" / "basic" / "basic-main.py")
    assert pairs(command) == {
        "--dataset": dataset, "--model_config": f"configs/archs/NAS-{base}-none.config", "--genotype": checkpoint,
        "--save_dir": f"output/nas-infer/{dataset}-BS96-gdas-searched", "--batch_size": "96", "--rand_seed": "-1"}
    assert resolve_config_path(pairs(command)["--model_config"]).is_file()
    assert default_optim_config(command) == resolve_config_path(f"configs/opts/NAS-{base}.config")


@pytest.mark.parametrize("script, entry, arch, opts, folder", [
    (SEARCH_GDAS, "GDAS", "GDAS", "GDAS", "GDAS"),
    (SEARCH_FRC, "GDAS", "GDASFRC", "GDAS", "GDAS-FRC"),
    (SEARCH_DARTS, "DARTS-V1", "DARTS", "DARTS", "DARTS-V1"),
])
def test_nasnet_search_commands(tmp_path, echo_python, script, entry, arch, opts, folder):
    """The drivers pass the positional arguments and the supernet; the original's other settings are the entry
    point's own defaults (defined once, in Python)."""
    command = entry_command(script, ["cifar100", 0, 11, "--epochs", 2], tmp_path, echo_python)
    assert command[0] == str(REPO / "exps" / "NAS-Bench-201-algos" / f"{entry}.py")
    assert pairs(command) == {
        "--dataset": "cifar100", "--track_running_stats": "0", "--rand_seed": "11",
        "--model_config": f"configs/search-archs/{arch}-NASNet-CIFAR.config", "--epochs": "2"}
    args = cli.parse_args(entry, command[1:])
    assert args.config_path == f"configs/search-opts/{opts}-NASNet-CIFAR.config"
    assert (args.arch_learning_rate, args.arch_weight_decay) == (3e-4, 1e-3)
    if entry == "GDAS":
        assert (args.tau_max, args.tau_min) == (10.0, 0.1)
    else:
        assert not hasattr(args, "tau_max")  # DARTS has no temperature, so no flag to set one
    model_config = load_config(args.model_config)
    assert args.search_space_name == "nasnet"
    assert cli.default_save_dir(entry, args, str(model_config.name)) == Path(
        f"output/search-cell-darts/{folder}-cifar100-BN0")
    for path in (args.model_config, args.config_path):
        assert resolve_config_path(path).is_file()


@pytest.mark.parametrize("entry, config", [("GDAS", "GDAS"), ("DARTS-V1", "DARTS"), ("DARTS-V2", "DARTS"),
                                           ("SETN", "SETN"), ("ENAS", "ENAS"), ("RANDOM-NAS", "RANDOM")])
def test_nb201_search_commands_leave_the_original_settings_to_the_entry_point(tmp_path, echo_python, entry, config):
    command = entry_command(f"scripts-search/algos/{entry}.sh", ["cifar10", 1, -1], tmp_path, echo_python)
    assert command[0] == str(REPO / "exps" / "NAS-Bench-201-algos" / f"{entry}.py")
    assert pairs(command) == {"--dataset": "cifar10", "--track_running_stats": "1", "--rand_seed": "-1"}
    args = cli.parse_args(entry, command[1:])
    assert args.config_path == f"configs/nas-benchmark/algos/{config}.config"
    assert (args.channel, args.num_cells, args.max_nodes) == (16, 5, 4)
    assert args.search_space_name == "nas-bench-201"
    assert cli.default_save_dir(entry, args, None) == Path(
        f"output/search-cell-nas-bench-201/{entry}-cifar10-BN1")


USAGE_CASES = [
    (NAS_INFER, ["cifar10", "GDAS_V1", "96"]),
    (NAS_INFER, ["cifar10", "GDAS_V1", "96", "-1", "stray"]),
    (NAS_INFER, ["svhn", "GDAS_V1", "96", "-1"]),
    (RETRAIN, ["cifar10", "name", "ckpt.pth", "96"]),
    (RETRAIN, ["mnist", "name", "ckpt.pth", "96", "-1"]),
    (SEARCH_GDAS, ["cifar10", "1"]),
    (SEARCH_FRC, []),
    (SEARCH_DARTS, ["cifar10", "1", "-1", "oops"]),
]


@pytest.mark.parametrize("script, args", USAGE_CASES)
def test_wrong_arguments_print_usage_and_exit_1(tmp_path, echo_python, script, args):
    done = driver(script, args, tmp_path, PYTHON=str(echo_python))
    assert done.returncode == 1
    assert done.stderr.startswith(f"usage: bash {script} ")
    assert done.stdout == ""  # the entry point never started


# ----------------------------------------------------------------------------------------------- smoke runs
@pytest.fixture
def workspace(tmp_path) -> Path:
    """Tiny CIFAR-10 under $TORCH_HOME/cifar.python, a tiny search split and tiny arch / supernet configs."""
    write_cifar10(tmp_path / "torch_home" / "cifar.python", n_train=64, n_test=32)
    write_split_file(tmp_path / "split.txt", {"train": list(range(32)), "valid": list(range(32, 64))})
    for name in ("GDAS", "GDAS_FRC", "DARTS"):
        (tmp_path / f"{name}-tiny.config").write_text(json.dumps({
            "super_type": ["str", "nasnet-super"], "name": ["str", name], "C": ["int", "4"], "N": ["int", "1"],
            "steps": ["int", "4"], "multiplier": ["int", "4"], "stem_multiplier": ["int", "3"]}))
    for name, genotype, channels in (("GDAS_V1", ["str", "GDAS_V1"], "8"), ("none", ["none", "none"], "6")):
        (tmp_path / f"NAS-CIFAR-{name}-tiny.config").write_text(json.dumps({
            "super_type": ["str", "infer-nasnet.cifar"], "genotype": genotype, "dataset": ["str", "cifar"],
            "ichannel": ["int", channels], "layers": ["int", "1"], "stem_multi": ["int", "3"],
            "auxiliary": ["bool", "1"], "drop_path_prob": ["float", "0.2"]}))
    return tmp_path


def smoke(script: str, args, workspace: Path) -> subprocess.CompletedProcess:
    done = driver(script, args, workspace, TORCH_HOME=str(workspace / "torch_home"))
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def search_smoke(script: str, tiny_config: str, workspace: Path) -> None:
    smoke(script, ["cifar10", 1, 7, "--model_config", workspace / tiny_config, "--split_file",
                   workspace / "split.txt", "--epochs", 1, *SMALL], workspace)


@pytest.mark.slow
def test_nas_infer_train_smoke_run(workspace):
    smoke(NAS_INFER, ["cifar10", "GDAS_V1", 8, 3, "--model_config", workspace / "NAS-CIFAR-GDAS_V1-tiny.config",
                      "--epochs", 1, "--warmup", 0, *SMALL], workspace)
    run_dir = workspace / "output" / "nas-infer" / "cifar10-GDAS_V1-8"
    summary = json.loads((run_dir / "seed-3-summary.json").read_text())
    trained = summary["basic_main"]
    assert NASNetGenotype.from_dict(trained["genotype"]) == GDAS_V1
    assert trained["optim_config"]["auxiliary"] == 0.4 and trained["optim_config"]["nesterov"] is True
    assert len(summary["history"]) == 1 and summary["finished"]
    assert trained["params"] > 0 and trained["flops"] > 0
    assert (run_dir / "checkpoint" / "seed-3-basic.pth").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("script, tiny_config, folder, algorithm, supernet", [
    (SEARCH_GDAS, "GDAS-tiny.config", "GDAS", "GDAS", "GDAS"),
    (SEARCH_DARTS, "DARTS-tiny.config", "DARTS-V1", "DARTS-V1", "DARTS"),
])
def test_nasnet_search_smoke_run(workspace, script, tiny_config, folder, algorithm, supernet):
    search_smoke(script, tiny_config, workspace)
    run_dir = workspace / "output" / "search-cell-darts" / f"{folder}-cifar10-BN1"
    state = load_checkpoint(run_dir / "checkpoint" / "seed-7-basic.pth")
    assert (state["space"], state["algorithm"], state["supernet"], state["finished"]) == (
        "nasnet", algorithm, supernet, True)
    assert state["args"]["config_path"].startswith("configs/search-opts/")
    summary = json.loads((run_dir / "seed-7-summary.json").read_text())
    genotype = NASNetGenotype.from_dict(summary["search"]["final_genotype_dict"])
    assert not genotype.fixed_reduction


@pytest.mark.slow
def test_gdas_frc_search_then_retrain_with_its_checkpoint(workspace):
    search_smoke(SEARCH_FRC, "GDAS_FRC-tiny.config", workspace)
    checkpoint = Path("output/search-cell-darts/GDAS-FRC-cifar10-BN1/checkpoint/seed-7-basic.pth")
    searched = NASNetGenotype.from_dict(load_checkpoint(workspace / checkpoint)["genotype"])
    assert searched.fixed_reduction

    smoke(RETRAIN, ["cifar10", "frc-searched", checkpoint, 8, 5, "--model_config",
                    workspace / "NAS-CIFAR-none-tiny.config", "--epochs", 1, "--warmup", 0, *SMALL], workspace)
    summary_path = workspace / "output" / "nas-infer" / "cifar10-BS8-frc-searched" / "seed-5-summary.json"
    summary = json.loads(summary_path.read_text())
    assert NASNetGenotype.from_dict(summary["basic_main"]["genotype"]) == searched
    assert summary["basic_main"]["channels"] == 8 and len(summary["history"]) == 1


def test_search_space_name_selects_the_space_and_flags_of_the_other_space_are_refused():
    nasnet = cli.parse_args("GDAS", ["--dataset", "cifar10", "--search_space_name", "darts"])
    assert nasnet.search_space_name == "nasnet"
    assert nasnet.model_config == "configs/search-archs/GDAS-NASNet-CIFAR.config"
    assert nasnet.config_path == "configs/search-opts/GDAS-NASNet-CIFAR.config"
    assert cli.default_save_dir("GDAS", nasnet, "GDAS") == Path("output/search-cell-darts/GDAS-cifar10-BN1")
    darts = cli.parse_args("DARTS-V2", ["--dataset", "cifar10", "--search_space_name", "nasnet"])
    assert darts.model_config == "configs/search-archs/DARTS-NASNet-CIFAR.config"
    assert cli.default_save_dir("DARTS-V2", darts, "DARTS") == Path("output/search-cell-darts/DARTS-V2-cifar10-BN1")
    with pytest.raises(ConfigError, match="--max_nodes size"):
        cli.parse_args("GDAS", ["--dataset", "cifar10", "--model_config", nasnet.model_config, "--max_nodes", "5"])
    with pytest.raises(ConfigError, match="describes a NASNet supernet, but the space is nas-bench-201"):
        cli.parse_args("GDAS", ["--dataset", "cifar10", "--search_space_name", "nas-bench-201", "--model_config",
                                nasnet.model_config])
    nb201 = cli.parse_args("GDAS", ["--dataset", "cifar10", "--channel", "8"])
    assert (nb201.search_space_name, nb201.channel, nb201.num_cells, nb201.model_config) == (
        "nas-bench-201", 8, 5, None)
