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
from xautodl.errors import XAutoDLError

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
