"""The TensorFlow search end to end (`exps-tf/GDAS.py`): on tiny CIFAR-10 data in the real on-disk format it
writes what the PyTorch search writes (same summary keys, NATS-Bench look-ups included), resumes after an
interruption onto the same trajectory, refuses a re-run with other settings, and turns bad input into one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import xautodl.tf  # noqa: F401  first: it loads what must come before TensorFlow (see xautodl/tf/__init__.py)

pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install -e '.[tf]')")

from conftest import REPO, crash_at_epoch  # noqa: E402
from fakedata import write_cifar10, write_split_file  # noqa: E402
from xautodl.commands import search, search_tf  # noqa: E402
from xautodl.errors import CheckpointError, ConfigError, XAutoDLError  # noqa: E402
from xautodl.runtime import load_checkpoint  # noqa: E402
from xautodl.search.loop import SearchLoop  # noqa: E402
from xautodl.spaces import nas201  # noqa: E402

# Tests marked slow run real searches: each spends 10-20 s tracing its two tf.function steps.


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf-search")
    home = root / "torch_home"
    write_cifar10(home / "cifar.python", n_train=48, n_test=16)
    split = write_split_file(root / "split.txt", {"train": list(range(24)), "valid": list(range(24, 48))})
    return {"home": home, "split": split, "root": root}


def tiny(data, save_dir, epochs: int = 2, seed: int = 5, extra=()) -> list[str]:
    return ["--dataset", "cifar10", "--data_path", str(data["home"] / "cifar.python"), "--split_file",
            str(data["split"]),
            "--channel", "2", "--num_cells", "1", "--batch_size", "8", "--limit_batches", "2", "--epochs", str(epochs),
            "--rand_seed", str(seed), "--device", "cpu", "--quiet", "--save_dir", str(save_dir), *extra]


def snapshot(folder) -> dict:
    """Every result file under `folder` (the run lock, which each attempt takes and stamps with its PID, aside)."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".lock"}


def fake_benchmark(args, space, logger):
    """Stands in for `search.benchmark_lookup` (the one both searches call): a NATS-Bench-shaped answer for every
    arch (the tiny benchmark of test_bench.py holds three archs only)."""
    return lambda arch: {"arch": arch, "accuracy": {"cifar10": {"test": float(len(arch) % 97)}}}


@pytest.fixture(scope="module")
def straight(data):
    """A finished 2-epoch GDAS search (shared by the tests below)."""
    run_dir = data["root"] / "straight"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search, "benchmark_lookup", fake_benchmark)
        return run_dir, search_tf.run(tiny(data, run_dir))


@pytest.mark.slow
def test_a_two_epoch_search_writes_the_files_and_keys_of_the_pytorch_search(data, straight, monkeypatch):
    run_dir, summary = straight
    log = (run_dir / "seed-5-log.txt").read_text()
    assert log.count("genotype: |") == 3 and "GDAS search (TensorFlow" in log  # 2 epochs + the final line
    assert log.count("benchmark: cifar10 test") == 2  # the per-epoch NATS-Bench look-up
    assert [h["benchmark"]["arch"] for h in summary["history"]] == [h["genotype"] for h in summary["history"]]
    assert list((run_dir / "tensorboard" / "seed-5").glob("events.out.tfevents.*")), "one TensorBoard run per seed"
    assert "to train the final genotype (epoch 2, the one reported)" in log
    written = json.loads((run_dir / "seed-5-summary.json").read_text())
    assert (written["search"]["final_genotype"] == summary["search"]["final_genotype"]
            == summary["history"][-1]["genotype"])
    assert [h["tau"] for h in written["history"]] == pytest.approx([10.0, 0.1])
    assert written["search"]["algorithm"] == "GDAS" and written["versions"]["tensorflow"]
    monkeypatch.setattr(search, "benchmark_lookup", fake_benchmark)
    ours = search.run("GDAS", tiny(data, data["root"] / "pytorch"))  # the PyTorch search, same settings
    assert set(written) == set(ours) and set(written["search"]) == set(ours["search"])
    assert set(written["history"][0]) == set(ours["history"][0])
    assert set(written["history"][0]["benchmark"]) == set(ours["history"][0]["benchmark"])
    state = load_checkpoint(run_dir / "checkpoint" / "seed-5-basic.pth")  # plain data, weights_only
    assert state["epoch"] == 1 and state["finished"] and (run_dir / "checkpoint" / "seed-5-best.pth").exists()
    net = nas201.build_supernet(None, 10, C=2, N=1)
    net.load_state_dict(state["model"])  # the TF model is stored in the PyTorch supernet's names and layouts
    assert str(net.genotype()) == summary["search"]["final_genotype"]


@pytest.mark.slow
def test_an_interrupted_search_resumes_onto_the_same_trajectory(data, straight, monkeypatch):
    run_dir = data["root"] / "resumed"
    real_run_epoch = crash_at_epoch(monkeypatch, SearchLoop, "run_epoch", 1)  # epoch 0 is the last checkpoint
    with pytest.raises(KeyboardInterrupt):
        search_tf.run(tiny(data, run_dir))
    assert load_checkpoint(run_dir / "checkpoint" / "seed-5-basic.pth")["epoch"] == 0
    monkeypatch.setattr(SearchLoop, "run_epoch", real_run_epoch)
    resumed = search_tf.run(tiny(data, run_dir))
    assert "resumed from" in (run_dir / "seed-5-log.txt").read_text()
    expected = straight[1]
    for key in ("genotype", "train_loss", "valid_loss", "valid_acc", "tau"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in expected["history"]], key
    a = load_checkpoint(straight[0] / "checkpoint" / "seed-5-basic.pth")
    b = load_checkpoint(run_dir / "checkpoint" / "seed-5-basic.pth")
    for part in ("model", "w_optimizer", "a_optimizer", "mixer"):
        assert json.dumps(str(a[part])) == json.dumps(str(b[part])), part
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_a_search_stopped_by_sigterm_mid_epoch_resumes_at_that_step_onto_the_same_trajectory(data, straight,
                                                                                             monkeypatch):
    import signal

    from xautodl.runtime.signals import Preempted
    from xautodl.tf.search import TFSearch

    run_dir = data["root"] / "preempted"
    real_step, calls = TFSearch.weight_step, []

    def signalling_step(self, x, y):
        calls.append(1)
        if len(calls) == 3:  # the first step of epoch 2 (2 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, x, y)

    monkeypatch.setattr(TFSearch, "weight_step", signalling_step)
    with pytest.raises(Preempted, match="after step 1 of 2 of epoch 2/2"):
        search_tf.run(tiny(data, run_dir))
    monkeypatch.setattr(TFSearch, "weight_step", real_step)
    resumed = search_tf.run(tiny(data, run_dir))
    assert "in epoch 2 after step 1 of 2" in (run_dir / "seed-5-log.txt").read_text()
    for key in ("genotype", "train_loss", "train_acc", "valid_loss", "valid_acc", "tau"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in straight[1]["history"]], key
    a = load_checkpoint(straight[0] / "checkpoint" / "seed-5-basic.pth")
    b = load_checkpoint(run_dir / "checkpoint" / "seed-5-basic.pth")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"] if k != "arch_parameters")
    # The alphas may differ in their last bits (1.2e-9 seen in 1 of 4 repeats; docs/tensorflow.md), never more.
    torch.testing.assert_close(b["model"]["arch_parameters"], a["model"]["arch_parameters"], rtol=0, atol=1e-7)
    assert json.dumps(str(a["mixer"])) == json.dumps(str(b["mixer"]))


@pytest.mark.slow
def test_a_rerun_with_other_settings_is_refused_and_changes_nothing(data, straight):
    run_dir = straight[0]
    summary = run_dir / "seed-5-summary.json"
    before = snapshot(run_dir / "checkpoint"), summary.read_bytes(), summary.stat().st_mtime_ns
    with pytest.raises(CheckpointError, match="belongs to another run .*batch_size=8"):
        search_tf.run(tiny(data, run_dir, extra=["--batch_size", "4"]))
    with pytest.raises(CheckpointError, match="algorithm=GDAS"):  # the DARTS-V1 mode is another algorithm
        search_tf.run(tiny(data, run_dir, extra=["--tau_max", "-1", "--tau_min", "-1"]))
    assert (snapshot(run_dir / "checkpoint"), summary.read_bytes(), summary.stat().st_mtime_ns) == before


@pytest.mark.slow
def test_darts_mode_mixes_with_softmax_and_has_its_own_default_folder(data, monkeypatch):
    monkeypatch.chdir(data["root"])
    argv = tiny(data, "unused", epochs=1, extra=["--tau_max", "-1", "--tau_min", "-1"])
    del argv[argv.index("--save_dir"):argv.index("--save_dir") + 2]  # the default output folder
    summary = search_tf.run(argv)
    run_dir = data["root"] / "output" / "search-cell-nas-bench-201" / "DARTS-V1-TF-cifar10-BN1"
    assert summary["search"]["algorithm"] == "DARTS-V1" and summary["history"][0]["tau"] is None
    assert (run_dir / "seed-5-summary.json").exists() and (run_dir / "checkpoint" / "seed-5-basic.pth").exists()
    assert "mixer" not in load_checkpoint(run_dir / "checkpoint" / "seed-5-basic.pth")


@pytest.mark.parametrize("extra, message", [
    (["--tau_max", "-1"], "only when both are -1"),
    (["--amp", "bf16"], "--amp do(es) not apply to the TensorFlow search"),
    (["--search_space_name", "darts"], "--search_space_name darts do(es) not apply"),
])
def test_flags_that_do_not_apply_are_refused(data, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        search_tf.parse_args(tiny(data, tmp_path / "run", extra=extra))


def test_a_temperature_that_is_neither_positive_nor_minus_one_is_a_flag_error(data, tmp_path, capsys):
    for value in ("0", "nan", "-2"):
        with pytest.raises(SystemExit) as exit_info:
            search_tf.parse_args(tiny(data, tmp_path / "run", extra=["--tau_min", value]))
        assert exit_info.value.code == 2
        assert "argument --tau_min: expected a positive number" in capsys.readouterr().err


def test_devices_map_to_tensorflow_devices():
    assert search_tf.select_tf_device("cpu") == "/CPU:0"
    assert search_tf.select_tf_device("auto") in ("/CPU:0", "/GPU:0")
    with pytest.raises(XAutoDLError, match="unknown device 'tpu'"):
        search_tf.select_tf_device("tpu")
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(XAutoDLError, match="sees 0 GPU"):
            search_tf.select_tf_device("cuda:0")


def test_bad_input_is_one_line_and_nonzero_exit(data, tmp_path):
    """Through the real entry point: a missing data folder."""
    argv = tiny(data, tmp_path / "run")
    argv[argv.index("--data_path") + 1] = str(tmp_path / "nowhere")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(REPO / "exps-tf" / "GDAS.py"), *argv], capture_output=True,
                            text=True, env=env, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1 and "not found" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    flag = subprocess.run([sys.executable, str(REPO / "exps-tf" / "GDAS.py"), *argv, "--epochs", "0"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert flag.returncode == 2 and flag.stderr.strip().splitlines()[-1].startswith("error: argument --epochs")
