"""The multi-trial searches (R-EA, Random, REINFORCE, BOHB) over a tiny benchmark in NATS-Bench's real format: the
64 cells made of two ops, whose best cell is known (tests/nats_fakes.py)."""
from __future__ import annotations

import collections
import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from nats_fakes import TINY_ARCHS, TINY_BEST, TINY_OPS, tiny_score, write_tiny_benchmark
from xautodl.bench.nats import LOADED_ARCH_FILES, NatsBenchmark
from xautodl.commands.trials import main, run
from xautodl.errors import DataError, XAutoDLError
from xautodl.runtime.run_record import read_record
from xautodl.trials import ALGORITHMS, TrialLoop
from xautodl.trials.bohb import budgets
from xautodl.trials.loop import arch_string
from xautodl.trials.regularized_ea import EvolutionSettings, mutate, regularized_evolution, tournament
from xautodl.trials.reinforce import EdgePolicy, MovingAverage, policy_step
from xautodl.trials import runs
from xautodl.trials.runs import run_search

OPS_FLAG = ["--op_names", ",".join(TINY_OPS)]
# A 12-epoch trial of the tiny benchmark costs 122 to 362 simulated seconds (cifar10).
GENEROUS_BUDGET = 100_000


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("torch-home")
    write_tiny_benchmark(home)
    return home


@pytest.fixture(scope="module")
def bench(torch_home) -> NatsBenchmark:
    return NatsBenchmark(torch_home / "NATS-tss-v1_0-3ffb9-simple")


def search(bench, name: str, seed: int, budget: float, dataset: str = "cifar10", **settings) -> TrialLoop:
    algorithm = ALGORITHMS[name]
    rng = random.Random(seed)
    trials = TrialLoop(bench, dataset, budget, rng, ops=TINY_OPS)
    algorithm.search(trials, rng, algorithm.settings_type(**settings))
    return trials


def test_the_tiny_benchmark_answers_trials_with_their_cost(bench):
    trials = bench.simulated_trials(TINY_BEST, "cifar10-valid")
    # 4 conv edges: 30 s per epoch x 12 + one 2 s validation pass (the validation time per epoch); seeds +-0.25.
    assert [trial.seconds for trial in trials] == [362.0, 362.0]
    assert [trial.valid_accuracy for trial in trials] == [50.0 + 4 * 7.5 - 0.25, 50.0 + 4 * 7.5 + 0.25]
    after_one_epoch = bench.simulated_trials(TINY_BEST, "cifar10-valid", epoch=0)
    assert [trial.seconds for trial in after_one_epoch] == [32.0, 32.0]
    assert after_one_epoch[0].valid_accuracy < trials[0].valid_accuracy
    for arch in TINY_ARCHS:
        bench.simulated_trials(arch, "cifar100")
    # The folder form keeps only the last few arch files read (each holds every epoch of every trial).
    assert len(bench.api.arch2infos_dict) == LOADED_ARCH_FILES


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_finds_the_best_cell_with_a_generous_budget(bench, name):
    trials = search(bench, name, seed=0, budget=GENEROUS_BUDGET)
    result = trials.result()
    assert result["best_arch"] == TINY_BEST
    assert result["test_accuracy"] == bench.query(TINY_BEST).datasets["cifar10"].test_accuracy
    assert result["best_results"]["arch"] == TINY_BEST and result["best_results"]["hp"] == "200"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_stops_at_the_budget_with_a_monotone_trajectory(bench, name):
    budget = 5000
    trajectory = search(bench, name, seed=3, budget=budget, dataset="cifar100").trajectory
    seconds = trajectory.seconds
    assert seconds[-2] < budget <= seconds[-1]  # the trial that crosses the budget is the last
    assert all(a < b for a, b in zip(seconds, seconds[1:]))
    best = trajectory.best_valid_accuracy
    assert all(a <= b for a, b in zip(best, best[1:]))
    assert best == list(itertools.accumulate(trajectory.valid_accuracy, max))
    # The test accuracy follows the best cell: it changes only where the best validation accuracy does.
    for index in range(1, len(best)):
        if best[index] == best[index - 1]:
            assert trajectory.best_test_accuracy[index] == trajectory.best_test_accuracy[index - 1]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_a_seed_reproduces_its_run(bench, name):
    first, again = (search(bench, name, seed=5, budget=8000) for _ in range(2))
    assert first.evaluated == again.evaluated
    assert first.result() == again.result()
    assert search(bench, name, seed=6, budget=8000).evaluated != first.evaluated


def test_regularized_evolution_removes_the_oldest_not_the_worst(bench):
    trials = TrialLoop(bench, "cifar10", 20_000, random.Random(1), ops=TINY_OPS)
    population = regularized_evolution(trials, random.Random(1), EvolutionSettings(population=5, sample_size=2))
    assert len(trials.evaluated) > 5
    assert [cell for cell, _ in population] == [cell for cell, _, _ in trials.evaluated[-5:]]


def test_the_tournament_picks_the_best_of_its_sample():
    population = [(("a",), 1.0), (("b",), 3.0), (("c",), 2.0)]
    rng = random.Random(0)
    assert all(tournament(population, 50, rng) == (("b",), 3.0) for _ in range(20))
    # A sample of one is a uniform draw: the worst member wins sometimes.
    assert {tournament(population, 1, rng)[0] for _ in range(100)} == {("a",), ("b",), ("c",)}


def test_mutation_switches_one_edge_chosen_node_first():
    rng = random.Random(0)
    cell = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none")
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    changed = collections.Counter()
    for _ in range(3000):
        child = mutate(cell, ops, rng)
        edges = [edge for edge in range(6) if child[edge] != cell[edge]]
        assert len(edges) == 1
        changed[edges[0]] += 1
    # Node 1 (edge 0) is drawn 1/3 of the time, each of node 2's two edges 1/6, each of node 3's three edges 1/9.
    for edge, share in zip(range(6), (1 / 3, 1 / 6, 1 / 6, 1 / 9, 1 / 9, 1 / 9)):
        assert abs(changed[edge] / 3000 - share) < 0.03


def test_reinforce_moves_the_policy_towards_rewards_above_the_baseline():
    generator = torch.Generator().manual_seed(0)
    for reward, direction in ((90.0, 1), (10.0, -1)):
        policy = EdgePolicy(5, generator)
        optimizer = torch.optim.Adam(policy.parameters(), lr=0.1)
        baseline = MovingAverage(0.9)
        baseline.update(50.0)
        actions, log_prob = policy.sample(generator)
        before = policy.probabilities().detach()[range(6), actions]
        policy_step(optimizer, log_prob, reward, baseline)
        after = policy.probabilities().detach()[range(6), actions]
        assert torch.all((after - before) * direction > 0)


def test_the_baseline_is_a_bias_corrected_moving_average():
    baseline = MovingAverage(0.9)
    baseline.update(80.0)
    assert baseline.value == pytest.approx(80.0)  # the first reward is the average, not 0.1 x 80
    baseline.update(60.0)
    assert baseline.value == pytest.approx((0.9 * 0.1 * 80 + 0.1 * 60) / (0.9 * 0.1 + 0.1))


def test_bohb_budgets_are_hpbandsters():
    assert budgets(1, 12, 3) == [1, 4, 12]


def test_runs_write_records_and_resume(torch_home, tmp_path, monkeypatch):
    save_dir = tmp_path / "search"
    common = ["--arch_nas_dataset", str(torch_home / "NATS-tss-v1_0-3ffb9-simple"), "--save_dir", str(save_dir),
              "--time_budget", "3000", *OPS_FLAG]
    records = run("R-EA", [*common, "--rand_seed", "-1", "--repeats", "2", "--ea_sample_size", "4"])
    folder = tmp_path / "search-tss" / "cifar10-T3000" / "R-EA-SS4"
    assert sorted(path.name for path in folder.glob("seed-*.json")) == ["seed-1.json", "seed-2.json"]
    stored = json.loads((folder / "seed-1.json").read_text())
    assert stored == json.loads(json.dumps(records[0]))
    assert stored["run"]["settings"] == {"time_budget": 3000, "ops": list(TINY_OPS), "population": 10,
                                         "sample_size": 4}
    assert {"algorithm", "dataset", "best_arch", "best_valid_accuracy", "test_accuracy", "best_results",
            "trials", "simulated_seconds", "wall_seconds", "trajectory"} <= set(stored["trials"])
    assert stored["seed"] == 1 and stored["run"]["seed"] == 1
    assert stored["trials"]["trials"] == len(stored["trials"]["trajectory"]["seconds"])
    assert "2 run(s): test accuracy" in (folder / "log.txt").read_text()
    # The one run record: read back through the schema's reader, no epoch keys, the wall time as `seconds`.
    record = read_record(folder / "seed-1.json", "trials")
    assert list(record) == ["schema", "command", "run", "seed", "finished", "seconds", "args", "versions", "trials"]
    assert record["command"] == "trials" and record["finished"] and "epochs_done" not in record
    assert record["seconds"] == record["trials"]["wall_seconds"] and record["args"]["sample_size"] == 4
    assert record["trials"]["trajectory"]["best_test_accuracy"][-1] == record["trials"]["test_accuracy"]
    with pytest.raises(XAutoDLError, match="not of a search run"):
        read_record(folder / "seed-1.json", "search")

    ran = []
    monkeypatch.setattr(runs, "run_search", lambda *args: ran.append(args[3]) or run_search(*args))
    records = run("R-EA", [*common, "--rand_seed", "-1", "--repeats", "3", "--ea_sample_size", "4"])
    assert ran == [3] and [record["seed"] for record in records] == [1, 2, 3]
    assert records[0] == stored and read_record(folder / "seed-3.json", "trials") == json.loads(json.dumps(records[2]))
    with pytest.raises(DataError, match="other settings"):
        run("R-EA", [*common, "--rand_seed", "1", "--ea_sample_size", "4", "--ea_population", "5"])
    assert ran == [3], "a refused setting runs nothing"


def test_a_damaged_or_foreign_record_stops_the_runs_with_one_line(torch_home, tmp_path):
    common = ["--arch_nas_dataset", str(torch_home / "NATS-tss-v1_0-3ffb9-simple"), "--save_dir",
              str(tmp_path / "search"), "--time_budget", "1000", *OPS_FLAG, "--rand_seed", "1"]
    run("RANDOM", common)
    path = tmp_path / "search-tss" / "cifar10-T1000" / "RANDOM" / "seed-1.json"
    record = json.loads(path.read_text())
    del record["trials"]
    path.write_text(json.dumps(record))
    with pytest.raises(XAutoDLError, match="lacks trials; move it away and re-run the multi-trial search"):
        run("RANDOM", common)


def test_a_missing_benchmark_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["random_wo_share.py", "--arch_nas_dataset", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exit_info:
        main("RANDOM")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NATS-Bench topology benchmark not found" in err
    assert "python -m xautodl.bench download" in err


def driver(torch_home: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_HOME": str(torch_home), "PYTHON": sys.executable}
    return subprocess.run(["bash", *args, "--time_budget", "2000", "--repeats", "2", "--save_dir",
                           str(tmp_path / "search"), *OPS_FLAG], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("command, folder, settings", [
    (["R-EA.sh", "cifar100", "3", "-1"], "cifar100-T2000/R-EA-SS3", {"sample_size": 3}),
    (["Random.sh", "-1"], "cifar10-T2000/RANDOM", {}),
    (["REINFORCE.sh", "0.5", "-1"], "cifar10-T2000/REINFORCE-0.5", {"learning_rate": 0.5}),
    (["BOHB.sh", "-1"], "cifar10-T2000/BOHB", {}),
    (["BOHB.sh", "ImageNet16-120", "7"], "ImageNet16-120-T2000/BOHB", {}),
])
def test_the_drivers_positional_arguments(torch_home, tmp_path, command, folder, settings):
    result = driver(torch_home, tmp_path, f"scripts-search/algos/{command[0]}", *command[1:])
    assert result.returncode == 0, result.stderr
    records = sorted((tmp_path / "search-tss" / folder).glob("seed-*.json"))
    seeds = [7] if command[-1] == "7" else [1, 2]
    assert [json.loads(path.read_text())["seed"] for path in records] == seeds
    stored = json.loads(records[0].read_text())
    assert stored["trials"]["dataset"] == folder.split("-T")[0]
    assert settings.items() <= stored["run"]["settings"].items()


def test_a_driver_refuses_a_wrong_argument_count(torch_home, tmp_path):
    result = driver(torch_home, tmp_path, "scripts-search/algos/R-EA.sh", "cifar10", "-1")
    assert result.returncode == 1 and "usage: bash scripts-search/algos/R-EA.sh" in result.stderr


def test_the_tiny_benchmark_has_one_best_cell():
    scores = sorted(tiny_score(arch) for arch in TINY_ARCHS)
    assert scores[-1] == tiny_score(TINY_BEST) > scores[-2]
    assert arch_string(("nor_conv_3x3",) * 6) in TINY_ARCHS


def test_bohb_without_optuna_says_how_to_install_it(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # a None entry makes `import optuna` fail
    with pytest.raises(XAutoDLError, match="pip install optuna"):
        search(bench, "BOHB", seed=0, budget=1000)


@pytest.mark.parametrize("name, flags", [
    ("R-EA", ["--ea_population", "0"]), ("R-EA", ["--ea_sample_size", "x"]), ("REINFORCE", ["--EMA_momentum", "1"]),
    ("BOHB", ["--min_epochs", "13"]), ("BOHB", ["--eta", "1"]), ("RANDOM", ["--op_names", "none"]),
])
def test_settings_out_of_range_are_refused(name, flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(name, flags)
    assert exit_info.value.code == 2 and capsys.readouterr().err.startswith(f"error: argument {flags[0]}")
