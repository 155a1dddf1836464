"""`python -m xautodl.summary`: a past search's summary, its per-epoch genotype table and its trajectory plot."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from xautodl.commands import summary as summary_cli
from xautodl.errors import XAutoDLError
from xautodl.runtime import load_checkpoint
from xautodl.commands import search as cli

TINY = ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "2",
        "--device", "cpu", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_benchmark(arch: str) -> dict:
    """What NATS-Bench returns for `arch` (query().to_dict()), with a test accuracy that depends on the arch."""
    convs = arch.count("nor_conv")
    return {"arch": arch, "index": 100 + convs, "hp": "200",
            "accuracy": {"cifar10-valid": {"train": 99.0, "valid": 85.0 + convs, "test": 84.5 + convs},
                         "cifar10": {"train": 99.5, "test": 90.25 + convs}}}


def search(run_dir: Path, seed: int = 5, epochs: int = 3, benchmark: bool = False) -> dict:
    extra = [] if benchmark else ["--no_benchmark"]
    return cli.run("GDAS", TINY + ["--epochs", str(epochs), "--rand_seed", str(seed), "--save_dir", str(run_dir),
                                   *extra])


@pytest.fixture
def benchmarked_run(tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A 3-epoch GDAS search whose genotypes were looked up in a (fake) benchmark."""
    monkeypatch.setattr(cli, "benchmark_lookup", lambda args, space, logger: fake_benchmark)
    run_dir = tmp_path / "run"
    return run_dir, search(run_dir, benchmark=True)


def test_summary_prints_the_run_the_table_and_writes_the_plot(benchmarked_run, capsys):
    run_dir, result = benchmarked_run
    written = summary_cli.run([str(run_dir)])
    out = capsys.readouterr().out
    history = result["history"]

    assert "GDAS on the nas-bench-201 space" in out
    assert "dataset:        digits" in out and "seed:           5" in out
    assert "epochs:         3 of 3 done" in out
    assert f"final genotype: {history[-1]['genotype']}" in out
    best = result["best"]
    assert f"best valid acc: {best['valid_acc']:.2f}% at epoch {best['epoch'] + 1}" in out
    assert f"search time:    {sum(h['seconds'] for h in history):.1f} s" in out
    final_bench = fake_benchmark(history[-1]["genotype"])
    assert f"arch index {final_bench['index']}" in out
    assert f"cifar10         train 99.50%, test {final_bench['accuracy']['cifar10']['test']:.2f}%" in out

    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["epoch", "train", "%", "valid", "%", "tau", "cifar10", "test", "%", "genotype"]
    rows = [line.split() for line in table[1:] if line.strip() and line.split()[0].isdigit()]
    assert len(rows) == len(history) == 3
    for row, entry in zip(rows, history):
        assert row[0] == str(entry["epoch"] + 1)
        assert row[1:4] == [f"{entry['train_acc']:.2f}", f"{entry['valid_acc']:.2f}", f"{entry['tau']:.3f}"]
        assert row[4] == f"{fake_benchmark(entry['genotype'])['accuracy']['cifar10']['test']:.2f}"
        assert row[5] == entry["genotype"]

    plot = run_dir / "seed-5-trajectory.png"
    assert written == [plot] and f"trajectory plot: {plot}" in out
    assert plot.read_bytes()[:8] == PNG_MAGIC and plot.stat().st_size > 10_000


def test_history_records_each_epochs_alpha_softmax_and_their_entropies(tmp_path):
    run_dir = tmp_path / "run"
    result = search(run_dir, epochs=2)
    for entry in result["history"]:
        assert len(entry["alphas"]) == 6, "NB201 cell with 4 nodes: 6 edges"
        for probs in entry["alphas"].values():
            assert len(probs) == 5 and sum(probs) == pytest.approx(1.0)
    final_alphas = load_checkpoint(run_dir / "checkpoint" / "seed-5-basic.pth")["model"]["arch_parameters"]
    recorded = torch.tensor(list(result["history"][-1]["alphas"].values()))
    assert torch.allclose(recorded, torch.softmax(final_alphas, dim=-1))
    written = json.loads((run_dir / "seed-5-summary.json").read_text())
    assert written["history"][-1]["alphas"] == result["history"][-1]["alphas"]

    entropies = summary_cli.edge_entropies({"uniform": [0.25] * 4, "decided": [1.0, 0.0, 0.0], "half": [0.5, 0.5]})
    assert entropies == pytest.approx({"uniform": math.log(4), "decided": 0.0, "half": math.log(2)})
    # 1e-3 * randn initial alphas: every edge starts next to the uniform distribution.
    first = summary_cli.edge_entropies(result["history"][0]["alphas"])
    assert all(math.log(5) - 1e-3 < h <= math.log(5) + 1e-9 for h in first.values())


def test_several_seeds_are_all_printed_and_plotted_together_or_chosen_with_seed(tmp_path, capsys):
    run_dir = tmp_path / "run"
    search(run_dir, seed=5, epochs=2)
    search(run_dir, seed=12, epochs=2)

    written = summary_cli.run([str(run_dir), "--no_plot"])
    out = capsys.readouterr().out
    assert written == [] and out.count("search:         GDAS") == 2
    assert out.index("seed-5-summary.json") < out.index("seed-12-summary.json"), "sorted by seed"

    # One plot for the folder, of the mean and the range of the two seeds.
    written = summary_cli.run([str(run_dir)])
    assert written == [run_dir / "seeds-trajectory.png"] and written[0].read_bytes()[:8] == PNG_MAGIC
    assert not (run_dir / "seed-5-trajectory.png").exists()
    assert "trajectory plot:" in capsys.readouterr().out

    written = summary_cli.run([str(run_dir), "--seed", "12", "--plot", str(tmp_path / "plots" / "twelve.png")])
    out = capsys.readouterr().out
    assert "seed:           12" in out and "seed:           5" not in out
    assert written == [tmp_path / "plots" / "twelve.png"] and written[0].stat().st_size > 0

    with pytest.raises(XAutoDLError, match=r"no summary for seed 7 .* the seeds there are 5, 12"):
        summary_cli.run([str(run_dir), "--seed", "7"])


def drawn_figure(summaries: list[dict], tmp_path: Path):
    """The figure `plot_trajectory` draws (its axes read back), rendered so that extents are final."""
    import matplotlib.figure

    captured = {}
    original = matplotlib.figure.Figure.savefig

    def keep(figure, *args, **kwargs):
        captured["figure"] = figure
        return original(figure, *args, **kwargs)

    matplotlib.figure.Figure.savefig = keep
    try:
        summary_cli.plot_trajectory(summaries, tmp_path / "plot.png")
    finally:
        matplotlib.figure.Figure.savefig = original
    figure = captured["figure"]
    figure.canvas.draw()
    return figure


def synthetic_summary(seed: int, train: list[float], probs: list[list[float]], tau: float | None = 1.0) -> dict:
    history = [{"epoch": e, "train_acc": acc, "valid_acc": acc - 1, "tau": tau, "genotype": "g",
                "alphas": {"1<-0": p, "2<-0": p}} for e, (acc, p) in enumerate(zip(train, probs))]
    return {"seed": seed, "history": history, "search": {"algorithm": "GDAS", "dataset": "digits"}}


def test_entropy_axis_shows_the_real_range_and_legends_sit_outside_the_curves(tmp_path):
    near_uniform = [[0.2 + 1e-7, 0.2 - 1e-7, 0.2, 0.2, 0.2]] * 3  # entropies 1.6094372..1.6094379-like
    figure = drawn_figure([synthetic_summary(1, [10.0, 20.0, 30.0], near_uniform)], tmp_path)
    acc_axes, _, entropy_axes = figure.axes[:3]
    low, high = entropy_axes.get_ylim()
    assert low == 0.0 and high == pytest.approx(math.log(5) * 1.05), "0 (decided) to log(#ops), not a zoom on noise"
    for axes in (acc_axes, entropy_axes):
        legend, box = axes.get_legend(), axes.get_window_extent()
        assert legend is not None and legend.get_window_extent().x0 >= box.x1, "the legend is right of the plot"


def test_several_seeds_plot_their_mean_with_the_real_range(tmp_path):
    probs = [[0.2] * 5, [0.6, 0.1, 0.1, 0.1, 0.1]]
    runs = [synthetic_summary(1, [10.0, 50.0], probs), synthetic_summary(2, [20.0, 70.0], probs)]
    acc_axes = drawn_figure(runs, tmp_path).axes[0]
    train_line = next(line for line in acc_axes.get_lines() if line.get_label().startswith("train"))
    assert list(train_line.get_ydata()) == [15.0, 60.0] and "mean of 2" in train_line.get_label()
    band = acc_axes.collections[0].get_paths()[0].vertices[:, 1]
    assert min(band) == 10.0 and max(band) == 70.0, "the band spans the lowest to the highest seed"


def test_epoch_entries_lacking_a_field_print_a_dash_and_a_note(tmp_path, capsys):
    run_dir = tmp_path / "run"
    search(run_dir, epochs=2)
    path = run_dir / "seed-5-summary.json"
    damaged = json.loads(path.read_text())
    del damaged["history"][1]["train_acc"]
    path.write_text(json.dumps(damaged))
    written = summary_cli.run([str(run_dir)])
    out = capsys.readouterr().out
    row = [line.split() for line in out.splitlines() if line.split()[:1] == ["2"]][0]
    assert row[1] == "-" and row[2] == f"{damaged['history'][1]['valid_acc']:.2f}"
    assert "note: epoch 2 lacks train_acc (a damaged or edited summary); shown as '-'" in out
    assert written and written[0].stat().st_size > 0

    damaged["history"] = {"not": "a list"}
    path.write_text(json.dumps(damaged))
    with pytest.raises(XAutoDLError, match="history is not a list of epoch entries"):
        summary_cli.run([str(run_dir)])


def test_a_summary_file_can_be_given_and_old_summaries_without_alphas_still_plot(tmp_path, capsys):
    run_dir = tmp_path / "run"
    search(run_dir, epochs=2)
    path = run_dir / "seed-5-summary.json"
    old = json.loads(path.read_text())
    for entry in old["history"]:
        del entry["alphas"]
    path.write_text(json.dumps(old))
    written = summary_cli.run([str(path)])
    assert written == [run_dir / "seed-5-trajectory.png"] and written[0].stat().st_size > 0
    assert "epochs:         2 of 2 done" in capsys.readouterr().out


def run_main(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["xautodl.summary", *argv])
    with pytest.raises(SystemExit) as exit_info:
        summary_cli.main()
    return exit_info.value.code, capsys.readouterr().err


def test_errors_say_what_was_expected(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, str(tmp_path / "nowhere"))
    assert code == 1 and err.startswith("error: run directory") and "does not exist" in err and "--save_dir" in err

    code, err = run_main(monkeypatch, capsys, str(tmp_path))
    assert code == 1 and "no search summary in" in err and "seed-*-summary.json" in err

    (tmp_path / "seed-3-summary.json").write_text('{"history": [')
    code, err = run_main(monkeypatch, capsys, str(tmp_path))
    assert code == 1 and "cannot read the search record" in err and "seed-3-summary.json" in err

    (tmp_path / "seed-3-summary.json").write_text('{"history": []}')  # a development build's, before the record
    code, err = run_main(monkeypatch, capsys, str(tmp_path))
    assert code == 1 and "seed-3-summary.json was written by a development build of xautodl" in err
    assert "move it away and re-run the search" in err and len(err.strip().splitlines()) == 1

    (tmp_path / "seed-3-summary.json").write_text('{"schema": 1, "command": "basic-main"}')
    code, err = run_main(monkeypatch, capsys, str(tmp_path))
    assert code == 1 and "is the record of a basic-main run, not of a search run" in err

    (tmp_path / "seed-3-summary.json").write_text('{"schema": 2, "command": "search"}')
    code, err = run_main(monkeypatch, capsys, str(tmp_path))
    assert code == 1 and "is a run record of schema 2; this xautodl reads schema 1" in err

    (tmp_path / "seed-3-summary.json").write_text('{"schema": 1, "command": "search", "history": []}')
    code, err = run_main(monkeypatch, capsys, str(tmp_path))
    assert code == 1 and "is damaged: it lacks run, seed, finished" in err


def test_missing_matplotlib_is_explained_and_no_plot_needs_none(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    search(run_dir, epochs=1)
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import` fail as if not installed
    with pytest.raises(XAutoDLError, match=r"needs matplotlib.*pip install matplotlib.*--no_plot"):
        summary_cli.run([str(run_dir)])
    assert summary_cli.run([str(run_dir), "--no_plot"]) == []
    assert "epochs:         1 of 1 done" in capsys.readouterr().out


def test_nasnet_genotypes_stay_on_one_table_row():
    history = [{"epoch": 0, "train_acc": 10.0, "valid_acc": 12.5, "tau": 10.0,
                "genotype": "normal: |sep_conv_3x3~0|+|skip_connect~1| concat=2,3\nreduce: |max_pool_3x3~0| concat=2"}]
    table = summary_cli.format_history_table({"search": {"dataset": "cifar10"}, "history": history})
    assert table.splitlines()[1].endswith("normal: |sep_conv_3x3~0|+|skip_connect~1| concat=2,3 / "
                                          "reduce: |max_pool_3x3~0| concat=2")


@pytest.mark.slow
def test_the_module_runs_as_a_command(tmp_path):
    run_dir = tmp_path / "run"
    search(run_dir, epochs=1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "xautodl.summary", str(run_dir)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "epochs:         1 of 1 done" in done.stdout and (run_dir / "seed-5-trajectory.png").stat().st_size > 0
