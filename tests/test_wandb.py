"""Weights & Biases beside TensorBoard (`--wandb`), with the real library in offline mode (no network).

The runs are read back from wandb's own offline files: `<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb`, a
LevelDB-style log of wandb's protobuf records (what `wandb sync` uploads), plus the media files beside it.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, crash_at_epoch
from test_nb201_train import torch_home, train  # noqa: F401 (torch_home: the tiny CIFAR fixture)

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

from xautodl.commands import search as cli  # noqa: E402
from xautodl.errors import XAutoDLError  # noqa: E402
from xautodl.runtime import RunLogger, load_checkpoint  # noqa: E402
from xautodl.runtime.wandb_log import INSTALL_HINT, WandbOptions  # noqa: E402
from xautodl.search.loop import SearchLoop  # noqa: E402

TINY_RUN = ["--dataset", "digits", "--batch_size", "16", "--limit_batches", "2", "--device", "cpu", "--quiet",
            "--rand_seed", "5"]
TINY = [*TINY_RUN, "--channel", "4", "--num_cells", "1"]  # a NAS-Bench-201 supernet
EPOCHS = 3
_BLOCK = 32 * 1024  # the log's block size; a record never starts in a block's last 6 bytes
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def fake_benchmark(arch: str) -> dict:
    """A NATS-Bench look-up result (`query().to_dict()`) whose test accuracy depends on the arch."""
    return {"arch": arch, "accuracy": {"cifar10": {"train": 99.5, "test": 90.25 + arch.count("nor_conv")}}}


def wandb_records(path: Path) -> list:
    """The protobuf records of a `.wandb` file: a 7-byte header (":W&B", a magic, a version), then LevelDB log
    records (crc32, length, type; a record split over blocks comes as FIRST, MIDDLE..., LAST)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb log"
    records, position, pending = [], 7, b""
    while position + 7 <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:  # zero padding up to the next block
            position += left
            continue
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def sessions(wandb_dir: Path) -> list[Path]:
    """The offline session folders under a wandb dir, oldest first, complete: a finished run's records reach its
    file from wandb's service process a moment later; shutting the service down waits for them (a process's exit
    does the same)."""
    wandb.teardown()
    return sorted((wandb_dir / "wandb").glob("offline-run-*"))


def history_rows(session: Path) -> list[dict]:
    """The history rows (key -> decoded value; a media value's fields as a dict) a session logged, in order."""
    rows = []
    for record in wandb_records(next(session.glob("run-*.wandb"))):
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict = {}
        for item in record.history.item:
            *parents, name = list(item.nested_key) or [item.key]
            target = row
            for parent in parents:
                target = target.setdefault(parent, {})
            target[name] = json.loads(item.value_json)
        rows.append(row)
    return rows


def config_of(session: Path) -> dict:
    """The config a session's run carries (its `run` record's, updated by its `config` records)."""
    config = {}
    for record in wandb_records(next(session.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        config.update({item.key: json.loads(item.value_json) for item in items})
    return config


def epoch_points(rows: list[dict]) -> list[dict]:
    """The rows holding an epoch's scalars (not the final drawings)."""
    return [row for row in rows if "search/train_loss" in row]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """wandb offline, its files in a temporary folder, no credentials or network."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(tmp_path_factory.mktemp("wandb-dir")))
        patch.setenv("WANDB_SILENT", "true")
        patch.delenv("WANDB_API_KEY", raising=False)
        patch.delenv("WANDB_PROJECT", raising=False)
        yield Path(os.environ["WANDB_DIR"])


@pytest.fixture(scope="module")
def resumed_search(offline, tmp_path_factory):
    """A 3-epoch GDAS search (its genotypes looked up in a fake benchmark) with --wandb killed after logging epoch 2 but before checkpointing it, then re-run:
    (run folder, summary, the wandb dir)."""
    run_dir = tmp_path_factory.mktemp("search") / "run"
    argv = [*TINY, "--epochs", str(EPOCHS), "--save_dir", str(run_dir), "--wandb", "--wandb_project", "tests"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "benchmark_lookup", lambda args, space, logger: fake_benchmark)
        with pytest.MonkeyPatch.context() as crash:
            crash_at_epoch(crash, SearchLoop, "best_entry", epoch=1)  # after `record`, before the checkpoint
            with pytest.raises(KeyboardInterrupt):
                cli.run("GDAS", argv)
        summary = cli.run("GDAS", argv)
    return run_dir, summary, offline


def test_search_logs_the_tensorboard_scalars_to_wandb(resumed_search):
    run_dir, summary, wandb_dir = resumed_search
    points = [row for session in sessions(wandb_dir) for row in epoch_points(history_rows(session))]
    assert [row["_step"] for row in points] == [0, 1, 2]
    for row, entry in zip(points, summary["history"]):
        assert row["search/train_loss"] == pytest.approx(entry["train_loss"])
        assert row["search/valid_acc"] == pytest.approx(entry["valid_acc"])
        assert row["search/lr"] == pytest.approx(entry["lr"]) and row["search/tau"] == pytest.approx(entry["tau"])
        assert "search/mean_alpha_entropy" in row
        assert row["benchmark/cifar10/test"] == entry["benchmark"]["accuracy"]["cifar10"]["test"]
        for edge, probs in entry["alphas"].items():
            assert [row[f"alpha/{edge}/{op}"] for op in summary["search"]["op_names"]] == pytest.approx(probs)


def test_search_settings_are_the_wandb_config(resumed_search):
    _, _, wandb_dir = resumed_search
    config = config_of(sessions(wandb_dir)[-1])
    assert config["dataset"] == "digits" and config["rand_seed"] == 5
    assert config["algorithm"] == "GDAS" and config["epochs"] == EPOCHS
    assert config["C"] == 4 and config["batch_size"] == 16


def test_every_epoch_genotype_is_a_wandb_table(resumed_search):
    _, summary, wandb_dir = resumed_search
    last = sessions(wandb_dir)[-1]
    row = epoch_points(history_rows(last))[-1]
    assert row["search/genotypes"]["_type"] == "table-file"
    table = json.loads((last / "files" / row["search/genotypes"]["path"]).read_text())
    assert table["columns"] == ["epoch", "genotype", "valid_acc"]
    assert [r[:2] for r in table["data"]] == [[h["epoch"] + 1, h["genotype"]] for h in summary["history"]]


def test_a_resumed_search_continues_its_wandb_run_and_logs_each_epoch_once(resumed_search):
    run_dir, _, wandb_dir = resumed_search
    first, second = sessions(wandb_dir)
    run_id = first.name.rsplit("-", 1)[1]
    assert second.name.endswith(f"-{run_id}"), "the re-run continues the same wandb run"
    assert load_checkpoint(run_dir / "checkpoint" / "seed-5-basic.pth")["wandb_run_id"] == run_id
    # The killed session logged epoch 2 but never checkpointed it: its points were held, and only the re-run,
    # which trained epoch 2 again, sent them.
    assert [row["_step"] for row in epoch_points(history_rows(first))] == [0]
    assert [row["_step"] for row in epoch_points(history_rows(second))] == [1, 2]
    log_lines = (run_dir / "seed-5-log.txt").read_text().splitlines()
    assert f"wandb run {run_id} continues (offline; project tests)" in "\n".join(log_lines)
    assert log_lines[-1].endswith(f"wandb sync {first} {second}")


def test_logger_falls_back_to_offline_without_credentials_and_logs_images(offline, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    image = tmp_path / "normal.png"
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    pyplot.imsave(image, [[0.0, 1.0], [1.0, 0.0]])
    folder = tmp_path / "run" / "tensorboard" / "seed-1"
    with RunLogger(tmp_path / "run", tensorboard=False, tensorboard_dir=folder,
                   wandb=WandbOptions("tests", config={"lr": 0.1})) as logger:
        run_id = logger.begin_run()
        logger.scalars({"search/train_loss": 1.5}, step=0)
        logger.checkpointed(0)
        logger.scalars({"search/train_loss": 1.0}, step=1)  # never checkpointed: dropped at the end
        logger.image("cells/normal", image)
    (session,) = sessions(tmp_path)
    assert session.name.endswith(run_id)
    rows = history_rows(session)
    assert [row.get("search/train_loss") for row in rows if "search/train_loss" in row] == [1.5]
    assert any(row.get("cells/normal", {}).get("_type") == "image-file" for row in rows)
    assert config_of(session)["lr"] == 0.1
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "no API key configured" in log and f"wandb sync {session}" in log


def test_wandb_flag_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    with pytest.raises(XAutoDLError, match=r"pip install 'xautodl\[wandb\]'") as raised:
        cli.run("GDAS", [*TINY, "--epochs", "1", "--save_dir", str(tmp_path / "run"), "--wandb", "--no_benchmark"])
    assert str(raised.value) == INSTALL_HINT


@pytest.mark.slow
def test_only_rank_zero_logs_to_wandb_under_torchrun(tmp_path):
    run_dir, wandb_dir = tmp_path / "run", tmp_path / "wandb-dir"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "exps" / "NAS-Bench-201-algos" / "GDAS.py"), *TINY, "--epochs", "2",
               "--save_dir", str(run_dir), "--wandb", "--no_benchmark"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), WANDB_MODE="offline", WANDB_SILENT="true",
               WANDB_DIR=str(wandb_dir))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (session,) = sessions(wandb_dir)
    assert [row["_step"] for row in epoch_points(history_rows(session))] == [0, 1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz 'dot' program is not installed")
def test_a_nasnet_search_logs_its_final_cell_drawings(offline, tmp_path):
    supernet = tmp_path / "GDAS-tiny.config"
    supernet.write_text(json.dumps({
        "super_type": ["str", "nasnet-super"], "name": ["str", "GDAS"], "C": ["int", "4"], "N": ["int", "1"],
        "steps": ["int", "4"], "multiplier": ["int", "4"], "stem_multiplier": ["int", "3"]}))
    wandb_dir = tmp_path / "wandb-dir"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_DIR", str(wandb_dir))
        cli.run("GDAS", [*TINY_RUN, "--model_config", str(supernet), "--epochs", "1", "--save_dir", str(tmp_path / "run"),
                         "--wandb"])
    (session,) = sessions(wandb_dir)
    drawings = [row for row in history_rows(session) if "cells/normal" in row or "cells/reduction" in row]
    assert {key for row in drawings for key in row if key.startswith("cells/")} == {"cells/normal", "cells/reduction"}
    assert all(row[key]["_type"] == "image-file" for row in drawings for key in row if key.startswith("cells/"))


@pytest.mark.slow
def test_train_a_net_gives_each_seed_its_own_wandb_run(offline, torch_home, tmp_path):
    wandb_dir = tmp_path / "wandb-dir"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_DIR", str(wandb_dir))
        train(tmp_path, "--seeds", "777", "888", "--wandb", datasets=["cifar10"])
    runs = sessions(wandb_dir)
    assert len(runs) == 2
    for session in runs:
        assert config_of(session)["seeds"] == [777, 888]
        assert [row["_step"] for row in history_rows(session) if "train/train_loss" in row] == [0]
    log = next((tmp_path / "out").glob("arch-*-log.txt")).read_text()
    assert all(f"wandb sync {session}" in log for session in runs)
