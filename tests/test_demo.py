"""The demo: GDAS against the ResNet cell, random cells and collapsed cells, with the noise level stated."""
from __future__ import annotations

import json
import statistics

import pytest

from xautodl.commands import demo
from xautodl.spaces.nas201 import Arch, parse_arch


def test_random_cells_are_reproducible_cells_of_the_space():
    cells = demo.random_cells(5, seed=3)
    assert [str(c) for c in cells] == [str(c) for c in demo.random_cells(5, seed=3)]
    assert len({str(c) for c in cells}) == 5
    for cell in cells:
        assert isinstance(cell, Arch) and str(parse_arch(str(cell))) == str(cell)
    assert str(demo.collapsed_cell("skip_connect")).count("skip_connect") == 6


def rows(found: list[float], resnet: list[float], random: list[float], skip: list[float], pool: list[float]):
    values = {"GDAS-found": found, "ResNet": resnet, "random cells": random, "all skip_connect": skip,
              "all avg_pool_3x3": pool}
    return [{"name": name, "accuracies": acc, "runs": f"{len(acc)} seeds", "genotype": "g"}
            for name, acc in values.items()]


def test_the_table_names_the_winner_its_margin_and_the_noise():
    table = demo.format_results(rows([98.0, 99.0], [97.0, 98.0], [90.0, 94.0, 96.0, 92.0], [94.0, 95.0],
                                     [93.0, 92.0]), 297)
    assert table[0].startswith("test accuracy on the digits test set (297 images; one image = 0.34 points)")
    found_row = next(line for line in table if line.strip().startswith("GDAS-found"))
    assert "98.50 +- 0.71" in found_row
    random_row = next(line for line in table if line.strip().startswith("random cells"))
    assert f"{statistics.fmean([90, 94, 96, 92]):.2f} +- {statistics.stdev([90, 94, 96, 92]):.2f}" in random_row
    # Pooled std over the single-cell rows (each pair differs by 1 point: std 0.71).
    assert table[-1] == ("   best: GDAS-found; GDAS-found vs the best other cell (ResNet) +1.00 points, vs the best "
                         "collapsed cell +4.00 points; seed-to-seed noise (pooled std of one cell over its training "
                         "seeds) 0.71 points")
    losing = demo.format_results(rows([96.0, 96.0], [98.0, 98.0], [90.0, 91.0], [94.0, 94.0], [93.0, 93.0]), 297)
    assert losing[-1].startswith("   best: ResNet; GDAS-found vs the best other cell (ResNet) -2.00 points")


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_writes_its_results(tmp_path, capsys):
    result = demo.run(["--search_epochs", "2", "--train_epochs", "1", "--search_channel", "4", "--channel", "4", "--num_cells", "1",
                       "--random_cells", "2", "--train_seeds", "2", "--device", "cpu", "--save_dir", str(tmp_path)])
    out = capsys.readouterr().out
    names = [row["name"] for row in result["rows"]]
    assert names == ["GDAS-found", "ResNet", "random cells", "all skip_connect", "all avg_pool_3x3"]
    assert [len(row["accuracies"]) for row in result["rows"]] == [2, 2, 4, 2, 2]
    assert result["test_images"] == 297 and "one image = 0.34 points" in out
    assert "largest softmax(alpha) per edge" in out and "seed-to-seed noise" in out
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["found"] == result["found"] and len(written["search"]["final_alphas"]) == 6
    log = (tmp_path / "search" / "seed-1-log.txt").read_text()
    assert log.count(" edges: ") == 2, "the search logs each edge's most probable op every epoch"
    again = demo.run(["--search_epochs", "2", "--train_epochs", "1", "--search_channel", "4", "--channel", "4", "--num_cells", "1",
                      "--random_cells", "2", "--train_seeds", "2", "--device", "cpu", "--save_dir", str(tmp_path)])
    assert again["rows"] == result["rows"], "a re-run reads the finished search and trainings back"
