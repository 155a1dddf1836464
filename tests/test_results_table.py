"""`python -m xautodl.summary --table`: the NAS-Bench-201 paper's results table over search folders, against real
(tiny) searches whose genotypes were looked up in a tiny NATS-Bench benchmark written in the real format."""
from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
from pathlib import Path

import pytest

from fakedata import write_cifar10, write_split_file
from test_bench import BEST_C10, RESNET, write_benchmark_folder
from xautodl.bench import NatsBenchmark
from xautodl.commands import results
from xautodl.commands import search as search_cli
from xautodl.commands import summary as summary_cli
from xautodl.commands import trials as trials_cli
from xautodl.errors import XAutoDLError
from xautodl.runtime.run_record import read_record
from xautodl.spaces.nas201 import parse_arch
from nats_fakes import TINY_OPS, write_tiny_benchmark

TINY = ["--dataset", "cifar10", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "2",
        "--device", "cpu", "--quiet", "--epochs", "2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, Path, NatsBenchmark]:
    """Two GDAS seeds and two DARTS-V1 seeds on (tiny) cifar10. Each epoch's genotype is looked up in the tiny
    benchmark, which stores two archs: a genotype with a 3x3 conv on edge 1<-0 reads as the best CIFAR-10 arch,
    any other as the ResNet cell (so the seeds can differ). Tests that change the runs work on a copy."""
    tmp_path = tmp_path_factory.mktemp("searched")
    bench = NatsBenchmark(write_benchmark_folder(tmp_path / "torch-home"))
    lookup = lambda arch: bench.query(BEST_C10 if arch.startswith("|nor_conv_3x3~0|") else RESNET).to_dict()
    data = write_cifar10(tmp_path / "cifar.python", n_train=64, n_test=32) / "cifar-10-batches-py"
    split = write_split_file(tmp_path / "split.txt", {"train": list(range(32)), "valid": list(range(32, 64))})
    gdas, darts = tmp_path / "GDAS-cifar10-BN1", tmp_path / "DARTS-V1-cifar10-BN1"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_cli, "benchmark_lookup", lambda args, space, logger: lookup)
        for algorithm, folder in (("GDAS", gdas), ("DARTS-V1", darts)):
            for seed in (3, 4):
                search_cli.run(algorithm, TINY + ["--data_path", str(data), "--split_file", str(split),
                                                  "--rand_seed", str(seed), "--save_dir", str(folder)])
    return gdas, darts, bench


def final_benchmarks(folder: Path) -> list[dict]:
    return [json.loads(p.read_text())["history"][-1]["benchmark"] for p in sorted(folder.glob("seed-*-summary.json"))]


def test_table_reports_mean_and_std_over_seeds_per_algorithm(searched, capsys):
    gdas, darts, _ = searched
    written = summary_cli.run(["--table", str(gdas), str(darts)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split("  ")[0] == "method" and "CIFAR-10 valid" in lines[0] and "ImageNet16-120 test" in lines[0]
    for folder, algorithm in ((gdas, "GDAS"), (darts, "DARTS-V1")):
        row = next(line for line in lines if line.startswith(f"{algorithm} (BN 1)"))
        benchmarks = final_benchmarks(folder)
        for setting, split in (("cifar10-valid", "valid"), ("cifar10", "test"), ("cifar100", "valid"),
                               ("ImageNet16-120", "test")):
            values = [b["accuracy"][setting][split] for b in benchmarks]
            assert f"{statistics.fmean(values):.2f} +- {statistics.stdev(values):.2f}" in row, (setting, split)
        assert "  2  " in row, "two seeds"
    published = next(line for line in lines if line.startswith("GDAS"))
    assert published.endswith("93.61+-0.09 / 70.70+-0.30 / 41.71+-0.98")
    assert next(line for line in lines if line.startswith("DARTS-V1")).endswith("54.30+-0.00 / 15.61+-0.00 / 16.32+-0.00")
    assert "GDAS (BN 1) on cifar10: 2 of 2 runs with benchmark figures" in out
    assert written == [gdas.parent / "search-results.png"] and written[0].read_bytes()[:8] == PNG_MAGIC


def test_every_weight_sharing_row_of_table_5_has_its_published_figures():
    from xautodl.search.registry import ALGORITHMS
    assert set(results.PUBLISHED_TEST) == set(ALGORITHMS)  # GDAS, DARTS-V1/V2, SETN, ENAS, RANDOM-NAS (RSPS)
    setn = results.ResultRow("SETN", "cifar10", "1", seeds=[1], epochs=[(2, 2)], seconds=[9.0])
    assert results.table_cells([setn])[1][0][-1] == "87.64+-0.00 / 59.05+-0.24 / 32.52+-0.21"
    elsewhere = results.ResultRow("SETN", "cifar100", "1", seeds=[1], epochs=[(2, 2)], seconds=[9.0])
    assert results.table_cells([elsewhere])[1][0][-1] == "-"  # the paper searched on CIFAR-10


def test_markdown_and_csv_give_the_same_numbers(searched, capsys):
    gdas, darts, _ = searched
    summary_cli.run(["--table", "--markdown", "--no_plot", str(gdas), str(darts)])
    markdown = capsys.readouterr().out
    assert markdown.startswith("| method | search on | seeds |") and "|---|" in markdown
    summary_cli.run(["--table", "--csv", str(gdas), str(darts), "--plot", str(gdas.parent / "fig.png")])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["algorithm"] for r in rows] == ["DARTS-V1", "GDAS"]  # sorted by dataset, then algorithm
    gdas_row = next(r for r in rows if r["algorithm"] == "GDAS")
    tests = [b["accuracy"]["cifar10"]["test"] for b in final_benchmarks(gdas)]
    assert float(gdas_row["CIFAR-10 test mean"]) == pytest.approx(statistics.fmean(tests), abs=1e-4)
    assert float(gdas_row["CIFAR-10 test std"]) == pytest.approx(statistics.stdev(tests), abs=1e-4)
    assert gdas_row["CIFAR-10 test n"] == "2" and gdas_row["seed_list"] == "3 4"
    assert gdas_row["published_test_cifar10"] == "93.61"
    shares = [100 * json.loads(path.read_text())["history"][-1]["parameter_free_share"]
              for path in sorted(gdas.glob("seed-*-summary.json"))]
    assert float(gdas_row["parameter_free_percent_mean"]) == pytest.approx(statistics.fmean(shares), abs=1e-4)
    cell = f"{statistics.fmean(tests):.2f} ± {statistics.stdev(tests):.2f}"
    assert cell in next(line for line in markdown.splitlines() if line.startswith("| GDAS"))
    assert (gdas.parent / "fig.png").read_bytes()[:8] == PNG_MAGIC


def test_runs_without_benchmark_figures_are_counted_and_looked_up_when_a_benchmark_is_given(searched, tmp_path,
                                                                                             capsys):
    gdas = Path(shutil.copytree(searched[0], tmp_path / searched[0].name))
    bench = searched[2]
    for path in gdas.glob("seed-*-summary.json"):
        summary = json.loads(path.read_text())
        for entry in summary["history"]:
            entry.pop("benchmark")
        summary["history"][-1]["genotype"] = RESNET
        path.write_text(json.dumps(summary))
    summary_cli.run(["--table", "--no_plot", str(gdas)])
    out = capsys.readouterr().out
    assert "GDAS (BN 1) on cifar10: 0 of 2 runs with benchmark figures" in out
    assert next(line for line in out.splitlines() if line.startswith("GDAS")).count(" - ") >= 6

    summary_cli.run(["--table", "--no_plot", str(gdas), "--arch_nas_dataset", str(bench.path)])
    out = capsys.readouterr().out
    resnet_test = bench.query(RESNET).to_dict()["accuracy"]["cifar10"]["test"]
    row = next(line for line in out.splitlines() if line.startswith("GDAS"))
    assert f"{resnet_test:.2f} +- 0.00" in row and "2 of 2 runs with benchmark figures" in out


def test_table_errors_are_one_line(tmp_path, searched):
    gdas, _, _ = searched
    with pytest.raises(XAutoDLError, match="pass one of them"):
        summary_cli.run(["--table", "--csv", "--markdown", str(gdas)])
    with pytest.raises(XAutoDLError, match="add --table"):
        summary_cli.run(["--csv", str(gdas)])
    with pytest.raises(XAutoDLError, match="the results table of several is --table"):
        summary_cli.run([str(gdas), str(gdas)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(XAutoDLError, match="no search summary in"):
        summary_cli.run(["--table", str(empty)])


def test_a_single_seed_shows_its_value_without_a_spread():
    assert results._cell([93.25]) == "93.25"
    assert results._cell([93.0, 94.0]) == "93.50 +- 0.71"
    assert results._cell(None) == "-"


@pytest.fixture(scope="module")
def multi_trial(tmp_path_factory) -> tuple[Path, Path]:
    """Three R-EA runs (seeds 1..3) on the tiny 64-cell benchmark; returns their folder and the benchmark."""
    tmp_path = tmp_path_factory.mktemp("multi-trial")
    bench_folder = write_tiny_benchmark(tmp_path / "torch-home")
    trials_cli.run("R-EA", ["--arch_nas_dataset", str(bench_folder), "--save_dir", str(tmp_path / "search"),
                            "--time_budget", "3000", "--op_names", ",".join(TINY_OPS), "--rand_seed", "-1",
                            "--repeats", "3"])
    return tmp_path / "search-tss" / "cifar10-T3000" / "R-EA-SS3", bench_folder


def test_a_multi_trial_folder_is_a_row_beside_the_searches(searched, multi_trial, tmp_path, capsys):
    gdas, _, _ = searched
    folder, _ = multi_trial
    records = [read_record(path, "trials") for path in sorted(folder.glob("seed-*.json"))]
    assert len(records) == 3
    plot = tmp_path / "table.png"
    written = summary_cli.run(["--table", str(gdas), str(folder), "--plot", str(plot)])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("R-EA "))
    finals = [record["trials"]["best_results"]["accuracy"] for record in records]
    for setting, split in (("cifar10-valid", "valid"), ("cifar10", "test"), ("cifar100", "valid"),
                           ("cifar100", "test"), ("ImageNet16-120", "valid"), ("ImageNet16-120", "test")):
        values = [final[setting][split] for final in finals]
        assert f"{statistics.fmean(values):.2f} +- {statistics.stdev(values):.2f}" in row, (setting, split)
    simulated = [record["trials"]["simulated_seconds"] for record in records]
    assert f"{statistics.fmean(simulated):.0f} +- {statistics.stdev(simulated):.0f} simulated s" in row
    shares = [100 * parse_arch(record["trials"]["best_arch"]).parameter_free_share() for record in records]
    assert row.split()[2] == "3" and row.rstrip().endswith("-"), "3 runs, nothing published"
    assert (f"{statistics.fmean(shares):.0f}" if len(set(shares)) == 1 else
            f"{statistics.fmean(shares):.0f} +- {statistics.stdev(shares):.0f}") in row
    assert "R-EA on cifar10: 3 of 3 runs with benchmark figures" in out and "simulated seconds" in out
    assert next(line for line in out.splitlines() if line.startswith("GDAS")).endswith("41.71+-0.98")
    assert written == [plot] and plot.read_bytes()[:8] == PNG_MAGIC

    summary_cli.run(["--table", "--csv", "--no_plot", str(gdas), str(folder)])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    rea = next(r for r in rows if r["algorithm"] == "R-EA")
    tests = [final["cifar10"]["test"] for final in finals]
    assert float(rea["CIFAR-10 test mean"]) == pytest.approx(statistics.fmean(tests), abs=1e-4)
    assert float(rea["CIFAR-10 test std"]) == pytest.approx(statistics.stdev(tests), abs=1e-4)
    assert rea["search_seconds_clock"] == "simulated" and rea["epochs_done"] == "" and rea["seed_list"] == "1 2 3"
    assert rea["published_test_cifar10"] == ""
    assert next(r for r in rows if r["algorithm"] == "GDAS")["search_seconds_clock"] == "real"


def test_a_multi_trial_record_without_figures_is_looked_up_at_200_epochs(multi_trial, tmp_path, capsys):
    folder, bench_folder = multi_trial
    copy = Path(shutil.copytree(folder, tmp_path / folder.name))
    expected = []
    for path in sorted(copy.glob("seed-*.json")):
        record = json.loads(path.read_text())
        expected.append(record["trials"].pop("best_results")["accuracy"]["cifar100"]["test"])
        path.write_text(json.dumps(record))
    summary_cli.run(["--table", "--no_plot", str(copy), "--arch_nas_dataset", str(bench_folder)])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("R-EA "))
    assert f"{statistics.fmean(expected):.2f} +- {statistics.stdev(expected):.2f}" in row
    assert NatsBenchmark(bench_folder).query(read_record(next(copy.glob("seed-1.json")), "trials")["trials"]
                                             ["best_arch"]).hp == "200"


def test_the_plain_summary_sends_a_multi_trial_folder_to_the_table(multi_trial):
    with pytest.raises(XAutoDLError, match="pass --table"):
        summary_cli.run([str(multi_trial[0])])


def test_multi_trial_curves_are_read_on_one_grid_of_seconds():
    runs = [[(10.0, 1.0), (20.0, 2.0), (40.0, 3.0)], [(15.0, 5.0), (30.0, 6.0)]]
    grid = results.on_common_grid(runs, points=4)
    assert [second for second, _ in grid[0]] == [second for second, _ in grid[1]] == [15.0, 20.0, 25.0, 30.0]
    assert [value for _, value in grid[0]] == [1.0, 2.0, 2.0, 2.0]
    assert [value for _, value in grid[1]] == [5.0, 5.0, 5.0, 6.0]
