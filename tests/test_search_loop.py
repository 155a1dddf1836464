"""The search loop end to end on the digits set: outputs, reproducibility and resume."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import crash_at_epoch

from xautodl.runtime import load_checkpoint
from xautodl.commands import search as cli
from xautodl.search.loop import SearchLoop

TINY = ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "2",
        "--device", "cpu", "--quiet", "--no_benchmark"]


def search(tmp_path, name: str, algorithm: str = "GDAS", epochs: int = 3, seed: int = 5, extra=()) -> dict:
    run_dir = tmp_path / name
    argv = TINY + ["--epochs", str(epochs), "--rand_seed", str(seed), "--save_dir", str(run_dir), *extra]
    return cli.run(algorithm, argv)


def final_state(tmp_path, name: str, seed: int = 5) -> dict:
    return load_checkpoint(tmp_path / name / "checkpoint" / f"seed-{seed}-basic.pth")


@pytest.mark.parametrize("algorithm", ["GDAS", "DARTS-V1", "DARTS-V2"])
def test_search_writes_checkpoints_summary_log_and_events(tmp_path, algorithm):
    summary = search(tmp_path, "run", algorithm, epochs=2)
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoint" / "seed-5-basic.pth").exists()
    assert (run_dir / "checkpoint" / "seed-5-best.pth").exists()
    assert list(run_dir.glob("events.out.tfevents.*")) or list(run_dir.rglob("events.out.tfevents.*"))
    log = (run_dir / "seed-5-log.txt").read_text()
    assert log.count("genotype:") >= 2
    assert "device cpu (channels-last, amp off)" in log  # --channels_last auto: channels-last on CPU
    written = json.loads((run_dir / "seed-5-summary.json").read_text())
    assert written["search"]["final_genotype"] == summary["search"]["final_genotype"]
    assert written["search"]["final_genotype"].startswith("|") and len(written["history"]) == 2
    for entry in written["history"]:
        assert {"genotype", "train_loss", "train_acc", "valid_loss", "valid_acc", "tau", "seconds"} <= set(entry)
    state = final_state(tmp_path, "run")
    assert state["epoch"] == 1 and state["finished"] and state["algorithm"] == algorithm


def test_gdas_tau_follows_the_schedule_in_the_history(tmp_path):
    summary = search(tmp_path, "run", "GDAS", epochs=3, extra=["--tau_max", "4", "--tau_min", "1"])
    assert [h["tau"] for h in summary["history"]] == pytest.approx([4.0, 2.5, 1.0])


def test_same_seed_same_trajectory(tmp_path):
    first = search(tmp_path, "a")
    second = search(tmp_path, "b")
    assert [h["genotype"] for h in first["history"]] == [h["genotype"] for h in second["history"]]
    assert [h["train_loss"] for h in first["history"]] == [h["train_loss"] for h in second["history"]]
    a, b = final_state(tmp_path, "a"), final_state(tmp_path, "b")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_resume_after_interruption_continues_the_same_trajectory(tmp_path, monkeypatch):
    search(tmp_path, "straight", epochs=3)

    real_run_epoch = crash_at_epoch(monkeypatch, SearchLoop, "run_epoch", 1)  # epoch 0's checkpoint is the last
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, "resumed", epochs=3)
    assert final_state(tmp_path, "resumed")["epoch"] == 0
    monkeypatch.setattr(SearchLoop, "run_epoch", real_run_epoch)
    summary = search(tmp_path, "resumed", epochs=3)

    straight = json.loads((tmp_path / "straight" / "seed-5-summary.json").read_text())
    assert [h["genotype"] for h in summary["history"]] == [h["genotype"] for h in straight["history"]]
    assert [h["valid_loss"] for h in summary["history"]] == [h["valid_loss"] for h in straight["history"]]
    a, b = final_state(tmp_path, "straight"), final_state(tmp_path, "resumed")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert "resumed from" in (tmp_path / "resumed" / "seed-5-log.txt").read_text()


def test_rerunning_a_finished_search_changes_nothing(tmp_path):
    search(tmp_path, "run", epochs=2)
    before = final_state(tmp_path, "run")
    summary = search(tmp_path, "run", epochs=2)
    after = final_state(tmp_path, "run")
    assert len(summary["history"]) == 2
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])


def test_random_seed_resumes_the_unfinished_run(tmp_path, monkeypatch):
    real_run_epoch = SearchLoop.run_epoch

    def crash(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_run_epoch(self, epoch)

    monkeypatch.setattr(SearchLoop, "run_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, "run", epochs=2, seed=-1)
    monkeypatch.setattr(SearchLoop, "run_epoch", real_run_epoch)
    summary = search(tmp_path, "run", epochs=2, seed=-1)
    assert len(list((tmp_path / "run" / "checkpoint").glob("seed-*-basic.pth"))) == 1
    assert len(summary["history"]) == 2


def test_bf16_and_channels_last_run_and_fp16_needs_cuda(tmp_path):
    summary = search(tmp_path, "fast", "GDAS", epochs=1, extra=["--amp", "bf16", "--channels_last"])
    entry = summary["history"][0]
    assert entry["train_loss"] == pytest.approx(2.3, abs=0.5) and entry["valid_loss"] == pytest.approx(2.3, abs=0.5)
    search(tmp_path, "plain", "GDAS", epochs=1, extra=["--channels_last", "off"])
    assert "device cpu (contiguous, amp off)" in (tmp_path / "plain" / "seed-5-log.txt").read_text()
    from xautodl.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        search(tmp_path, "fp16", "GDAS", epochs=1, extra=["--amp", "fp16"])


def test_resuming_a_checkpoint_of_another_supernet_stops_with_a_clear_message(tmp_path):
    """A checkpoint whose model lacks a layer (as NASNet ones written before `lastact` was added) stops the re-run
    with a message naming the checkpoint and what to do, not a traceback, and is left as it was."""
    from xautodl.errors import CheckpointError

    search(tmp_path, "run", epochs=1)
    path = tmp_path / "run" / "checkpoint" / "seed-5-basic.pth"
    state = load_checkpoint(path)
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("lastact.")}
    torch.save(state, path)
    written = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"does not fit.*lastact.*--save_dir"):
        search(tmp_path, "run", epochs=2)
    assert path.read_bytes() == written


def test_darts_has_no_temperature_to_log_or_set(tmp_path, capsys):
    """DARTS mixes with softmax: its history records no tau, its log shows none, and it has no tau flags."""
    from xautodl.commands.summary import format_history_table

    summary = search(tmp_path, "run", "DARTS-V1", epochs=1)
    assert summary["history"][0]["tau"] is None and summary["search"]["algorithm"] == "DARTS-V1"
    log = (tmp_path / "run" / "seed-5-log.txt").read_text()
    assert "tau" not in log
    assert format_history_table(summary).splitlines()[1].split()[3] == "-"
    with pytest.raises(SystemExit):
        search(tmp_path, "other", "DARTS-V1", epochs=1, extra=["--tau_max", "5"])
    assert "unrecognized arguments: --tau_max 5" in capsys.readouterr().err


def test_a_rerun_with_other_settings_or_fewer_epochs_is_refused_before_any_work(tmp_path):
    """Resume never mixes runs: another batch size, dataset-defining shape or BN tracking stops with the settings
    named, both values given; fewer epochs than the run holds says so; the checkpoint is left as it was."""
    from xautodl.errors import CheckpointError

    search(tmp_path, "run", epochs=2)
    path = tmp_path / "run" / "checkpoint" / "seed-5-basic.pth"
    written = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"belongs to another run \(batch_size=16\), not to this one "
                                              r"\(batch_size=8\)"):
        search(tmp_path, "run", epochs=3, extra=["--batch_size", "8"])
    with pytest.raises(CheckpointError, match=r"\(C=4\).*\(C=6\)"):
        search(tmp_path, "run", epochs=3, extra=["--channel", "6"])
    with pytest.raises(CheckpointError, match="already holds 2 epochs, more than the 1"):
        search(tmp_path, "run", epochs=1)
    assert path.read_bytes() == written
    assert len(search(tmp_path, "run", epochs=3)["history"]) == 3  # more epochs extend the run


def test_parameter_free_share_counts_the_ops_without_weights():
    from xautodl.spaces.genotypes import get_genotype
    from xautodl.spaces.nas201 import parse_arch

    assert parse_arch("resnet").parameter_free_share() == pytest.approx(4 / 6)  # 2 x none, 2 x skip_connect
    assert parse_arch("|skip_connect~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"
                      ).parameter_free_share() == 1.0
    # DARTS_V1: normal 3 skip of 8 ops, reduce 4 max_pool + 3 skip + 1 avg_pool of 8
    assert get_genotype("DARTS_V1").parameter_free_share() == pytest.approx((3 + 8) / 16)


def test_each_epoch_records_its_parameter_free_share_and_a_lasting_collapse_is_warned_of_once(tmp_path, monkeypatch):
    from xautodl.spaces.nas201 import parse_arch

    summary = search(tmp_path, "run", "DARTS-V1", epochs=2)
    log = (tmp_path / "run" / "seed-5-log.txt").read_text()
    for entry in summary["history"]:
        assert entry["parameter_free_share"] == parse_arch(entry["genotype"]).parameter_free_share()
        assert f"epoch {entry['epoch'] + 1:3d} parameter-free ops: {entry['parameter_free_share']:.0%} of the cell" in log

    collapsed = parse_arch("|skip_connect~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    monkeypatch.setattr(SearchLoop, "genotype", lambda self: collapsed)  # 5 of 6 parameter-free, every epoch
    search(tmp_path, "collapsed", "DARTS-V1", epochs=5)
    log = (tmp_path / "collapsed" / "seed-5-log.txt").read_text()
    assert log.count("warning: parameter-free ops") == 1, "said once, after the third epoch"
    lines = log.splitlines()
    warning = next(i for i, line in enumerate(lines) if "warning: parameter-free ops" in line)
    assert "epoch   3 parameter-free ops: 83%" in "\n".join(lines[:warning])
    assert "epoch   4" not in "\n".join(lines[:warning])
