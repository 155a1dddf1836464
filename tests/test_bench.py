"""NATS-Bench look-ups against a small benchmark written with nats_bench's own classes in its own format."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from nats_bench.api_utils import ArchResults, ResultsCount, pickle_save

from conftest import REPO
from nats_fakes import CLASSES, EVAL_SETS
from xautodl.bench import (
    NatsBenchmark,
    download_benchmark,
    find_benchmark,
    open_benchmark,
)
from xautodl.commands.bench import main
from xautodl.errors import ArchError, DataError
from xautodl.runtime.cli import main_guard
from xautodl.spaces.nas201 import parse_arch

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NOT_STORED = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
META_ARCHS = [RESNET, BEST_C10, NOT_STORED]  # per-arch files are written for the first two only

DATASET_OFFSET = {"cifar10-valid": 0.0, "cifar10": 2.0, "cifar100": -20.0, "ImageNet16-120": -40.0}
SET_BASE = {"train": 90.0, "x-valid": 80.0, "x-test": 70.0, "ori-test": 60.0}
SEEDS = (777, 888)
EPOCHS = 3


def final_accuracy(index: int, dataset: str, split: str, seed: int) -> float:
    """The accuracy written for the last epoch of one trial; seeds 777 and 888 differ by 1 point."""
    return SET_BASE[split] + DATASET_OFFSET[dataset] + index + (seed - 777) / 111


def expected_mean(index: int, dataset: str, split: str) -> float:
    return sum(final_accuracy(index, dataset, split, seed) for seed in SEEDS) / len(SEEDS)


def make_trial(index: int, arch: str, dataset: str, seed: int) -> ResultsCount:
    # Earlier epochs are 10 points lower, so reading anything but the last epoch shows.
    def per_epoch(split: str) -> list[float]:
        final = final_accuracy(index, dataset, split, seed)
        return [final - 10.0] * (EPOCHS - 1) + [final]

    config = {"name": "infer.tiny", "channel": 16, "num_cells": 5, "arch_str": arch, "class_num": CLASSES[dataset]}
    trial = ResultsCount(dataset, None, per_epoch("train"), [0.5] * EPOCHS, 1.0 + index + CLASSES[dataset] / 1000,
                         100.0 + index, config, seed, EPOCHS, [0.01])
    accs, losses, times = {}, {}, {}
    for split in EVAL_SETS[dataset]:
        for epoch, accuracy in enumerate(per_epoch(split)):
            accs[f"{split}@{epoch}"], losses[f"{split}@{epoch}"], times[f"{split}@{epoch}"] = accuracy, 1.0, 0.1
    trial.update_eval(accs, losses, times)
    return trial


def arch_results(index: int, arch: str) -> dict:
    """{hp: ArchResults state} as one per-arch file of the benchmark holds it."""
    results = ArchResults(index, arch)
    for dataset in EVAL_SETS:
        for seed in SEEDS:
            results.update(dataset, seed, make_trial(index, arch, dataset, seed))
    return {"200": results.state_dict()}


def write_benchmark_folder(torch_home: Path) -> Path:
    """NATS-tss-v1_0-3ffb9-simple/ as nats_bench's fast mode reads it: meta file + one file per stored arch."""
    folder = torch_home / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir(parents=True)
    pickle_save({"meta_archs": META_ARCHS, "arch2infos": {}, "evaluated_indexes": []}, folder / "meta.pickle")
    for index in (0, 1):
        pickle_save(arch_results(index, META_ARCHS[index]), folder / f"{index:06d}.pickle")
    return folder


def write_benchmark_file(torch_home: Path) -> Path:
    """The single-file form NATS-tss-v1_0-3ffb9.pickle.pbz2 (every result in one dict)."""
    torch_home.mkdir(parents=True, exist_ok=True)
    infos = {index: arch_results(index, META_ARCHS[index]) for index in (0, 1)}
    pickle_save({"meta_archs": META_ARCHS, "arch2infos": infos, "evaluated_indexes": [0, 1]},
                torch_home / "NATS-tss-v1_0-3ffb9.pickle")
    return torch_home / "NATS-tss-v1_0-3ffb9.pickle.pbz2"


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def check_results(result, index: int, arch: str) -> None:
    assert result.index == index and result.arch == arch and result.hp == "200"
    assert list(result.datasets) == ["cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"]
    for dataset, row in result.datasets.items():
        assert row.train_accuracy == pytest.approx(expected_mean(index, dataset, "train"))
        assert row.params_mb == pytest.approx(1.0 + index + CLASSES[dataset] / 1000)
        assert row.flops_m == pytest.approx(100.0 + index)
    c10_valid, c10, c100 = (result.datasets[name] for name in ("cifar10-valid", "cifar10", "cifar100"))
    assert c10_valid.valid_accuracy == pytest.approx(expected_mean(index, "cifar10-valid", "x-valid"))
    assert c10_valid.test_accuracy == pytest.approx(expected_mean(index, "cifar10-valid", "ori-test"))
    assert c10.valid_accuracy is None
    assert c10.test_accuracy == pytest.approx(expected_mean(index, "cifar10", "ori-test"))
    assert c100.valid_accuracy == pytest.approx(expected_mean(index, "cifar100", "x-valid"))
    assert c100.test_accuracy == pytest.approx(expected_mean(index, "cifar100", "x-test"))


def test_query_the_folder_form(torch_home):
    folder = write_benchmark_folder(torch_home)
    assert find_benchmark() == folder
    bench = open_benchmark()
    assert isinstance(bench, NatsBenchmark) and len(bench) == 3
    result = bench.query("resnet")
    check_results(result, 0, RESNET)
    check_results(bench.query(parse_arch(BEST_C10)), 1, BEST_C10)
    assert bench.query(f"  {RESNET} ") is result  # cached per arch


def test_in_place_reads_answer_as_the_public_nats_bench_calls(tmp_path):
    """NatsBenchmark reads an arch's results without nats_bench's deep copy (`_arch_results`): the same answers as
    `get_cost_info`, `query_meta_info_by_index(...).get_dataset_seeds` and `get_more_info` (the textbook form)."""
    from nats_fakes import TINY_ARCHS, write_tiny_benchmark
    bench = NatsBenchmark(write_tiny_benchmark(tmp_path))
    api = bench.api
    for arch in (TINY_ARCHS[0], TINY_ARCHS[37], TINY_ARCHS[-1]):
        index = api.query_index_by_arch(arch)
        for hp in ("12", "200"):
            result = bench.query(arch, hp)
            for dataset, row in result.datasets.items():
                public = api.get_cost_info(index, dataset, hp=hp)
                assert (row.params_mb, row.flops_m) == (public["params"], public["flops"])
            for dataset in ("cifar10-valid", "cifar100"):
                trials = bench.simulated_trials(arch, dataset, hp)
                seeds = api.query_meta_info_by_index(index, hp).get_dataset_seeds(dataset)
                assert [trial.seed for trial in trials] == seeds and len(seeds) >= 1
                for trial in trials:
                    info = api.get_more_info(index, dataset, hp=hp, is_random=trial.seed)
                    assert trial.valid_accuracy == info["valid-accuracy"]
                    assert trial.seconds == info["train-all-time"] + info["valid-per-time"]
    with pytest.raises(DataError, match="no 7-epoch"):
        bench.simulated_trials(TINY_ARCHS[1], "cifar10-valid", "7")


def test_query_the_single_file_form(torch_home):
    path = write_benchmark_file(torch_home)
    assert find_benchmark() == path
    check_results(open_benchmark().query(BEST_C10), 1, BEST_C10)


def test_result_dict_and_table(torch_home):
    write_benchmark_folder(torch_home)
    result = open_benchmark().query(RESNET)
    data = result.to_dict()
    assert data["index"] == 0 and data["arch"] == RESNET
    assert set(data["accuracy"]["cifar10"]) == {"train", "test"}
    assert data["accuracy"]["cifar100"]["test"] == pytest.approx(expected_mean(0, "cifar100", "x-test"))
    assert data["flops"]["ImageNet16-120"] == pytest.approx(100.0)
    table = result.format_table().splitlines()
    assert RESNET in table[0] and "index 0" in table[0]
    cifar10_row = next(line for line in table if line.startswith("cifar10 "))
    assert cifar10_row.split() == ["cifar10", f"{expected_mean(0, 'cifar10', 'train'):.2f}", "-",
                                   f"{expected_mean(0, 'cifar10', 'ori-test'):.2f}", "1.010", "100.00"]


def test_archs_the_benchmark_cannot_answer(torch_home):
    write_benchmark_folder(torch_home)
    bench = open_benchmark()
    with pytest.raises(DataError, match="no complete 200-epoch results for arch 2"):
        bench.query(NOT_STORED)
    with pytest.raises(DataError, match="not in the benchmark"):
        bench.query("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(DataError, match="no complete 12-epoch results"):
        bench.query(RESNET, hp="12")


def test_missing_benchmark_is_a_one_line_notice(torch_home, capsys):
    assert find_benchmark() is None
    assert open_benchmark() is None
    printed = capsys.readouterr().out.strip()
    assert len(printed.splitlines()) == 1
    assert str(torch_home) in printed and "python -m xautodl.bench download" in printed

    class Logger:
        def __init__(self):
            self.lines: list[str] = []

        def log(self, message: str) -> None:
            self.lines.append(message)

    logger = Logger()
    assert open_benchmark(torch_home / "elsewhere", logger=logger) is None
    assert len(logger.lines) == 1 and "elsewhere" in logger.lines[0]
    assert capsys.readouterr().out == ""


def test_half_unpacked_folder_is_not_a_benchmark(torch_home):
    (torch_home / "NATS-tss-v1_0-3ffb9-simple").mkdir(parents=True)
    assert find_benchmark() is None


def test_unreadable_benchmark_is_a_data_error(torch_home):
    torch_home.mkdir()
    (torch_home / "NATS-tss-v1_0-3ffb9.pickle.pbz2").write_bytes(b"not a benchmark")
    with pytest.raises(DataError, match="cannot read the NATS-Bench topology benchmark"):
        open_benchmark()


def run_cli(*args: str, torch_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TORCH_HOME=str(torch_home), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "xautodl.bench", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_cli_query_prints_the_table(torch_home):
    write_benchmark_folder(torch_home)
    done = run_cli("query", "resnet", torch_home=torch_home)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert RESNET in lines[0]
    row = next(line for line in lines if line.startswith("cifar100 ")).split()
    assert row[1:4] == [f"{expected_mean(0, 'cifar100', split):.2f}" for split in ("train", "x-valid", "x-test")]


def test_cli_query_errors(torch_home, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_guard(lambda: main(["query", BEST_C10]))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith("error: NATS-Bench topology benchmark not found")
    write_benchmark_folder(torch_home)
    with pytest.raises(ArchError, match="valid ops"):
        main(["query", "|bad~0|"])


def test_download_offline_explains_the_manual_steps(torch_home, monkeypatch):
    import gdown

    def offline(**kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(gdown, "download", offline)
    with pytest.raises(DataError) as info:
        download_benchmark("tss")
    message = str(info.value)
    assert "https://drive.google.com/uc?id=17_saCsj_krKjlCBLOJEpNtzPXArMCqxU" in message
    assert str(torch_home / "NATS-tss-v1_0-3ffb9-simple") in message
    with pytest.raises(DataError, match="https://drive.google.com/uc[?]id=1scOMTUwcQhAMa_IMedp9lTzwmgqHLGgA"):
        main(["download", "--space", "sss", "--torch_home", str(torch_home / "other")])
    assert not (torch_home / "NATS-tss-v1_0-3ffb9-simple").exists()


def test_download_unpacks_the_archive(torch_home, tmp_path, monkeypatch):
    import gdown

    source = write_benchmark_folder(tmp_path / "source")
    fetched = []

    def fake_download(id, output, **kwargs):  # writes the archive the real Drive file would be
        fetched.append(id)
        with tarfile.open(output, "w") as tar:
            tar.add(source, arcname=source.name)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    target = download_benchmark("tss")
    assert fetched == ["17_saCsj_krKjlCBLOJEpNtzPXArMCqxU"]
    assert target == torch_home / "NATS-tss-v1_0-3ffb9-simple" == find_benchmark()
    assert sorted(p.name for p in torch_home.iterdir()) == ["NATS-tss-v1_0-3ffb9-simple"]
    check_results(open_benchmark().query(RESNET), 0, RESNET)
    assert download_benchmark("tss") == target and fetched == ["17_saCsj_krKjlCBLOJEpNtzPXArMCqxU"]


# ------------------------------------------------------------------------------- no code from benchmark files
class Payload:
    """Unpickling this runs a shell command that creates `marker` (what a crafted benchmark file could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("poisoned", ["meta", "arch file", "single file"])
def test_benchmark_pickles_with_a_payload_are_refused_and_never_run(torch_home, tmp_path, poisoned):
    marker = tmp_path / "payload-ran"
    if poisoned == "single file":
        bad = write_benchmark_file(torch_home)
        infos = {0: arch_results(0, RESNET), 1: {"200": Payload(marker)}}
        pickle_save({"meta_archs": META_ARCHS, "arch2infos": infos, "evaluated_indexes": [0, 1]},
                    torch_home / "NATS-tss-v1_0-3ffb9.pickle")
    else:
        folder = write_benchmark_folder(torch_home)
        name = "meta" if poisoned == "meta" else "000000"
        content = ({"meta_archs": META_ARCHS, "arch2infos": {}, "evaluated_indexes": Payload(marker)}
                   if poisoned == "meta" else {"200": Payload(marker)})
        pickle_save(content, folder / f"{name}.pickle")
        bad = folder / f"{name}.pickle.pbz2"
    before = snapshot(torch_home)
    done = run_cli("query", "resnet", torch_home=torch_home)

    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: refusing to read the benchmark file {bad}: it names the Python object "
                               "posix.system"), lines[0]
    assert "python -m xautodl.bench download" in lines[0]
    assert not marker.exists(), "the payload ran"
    assert snapshot(torch_home) == before
    # nats_bench's own reader is back in place once the look-up is over.
    import nats_bench.api_utils
    assert nats_bench.api_utils.pickle_load.__module__ == "nats_bench.api_utils"


def fake_drive(monkeypatch, write) -> list:
    """gdown.download replaced by `write(output)` (what Drive sent); returns the ids fetched."""
    import gdown

    fetched = []

    def download(id, output, **kwargs):
        fetched.append(id)
        write(Path(output))
        return output

    monkeypatch.setattr(gdown, "download", download)
    return fetched


def test_download_checks_the_sha256_it_is_given(torch_home, tmp_path, monkeypatch, capsys):
    source = write_benchmark_folder(tmp_path / "source")
    archive = tmp_path / "good.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=source.name)
    fake_drive(monkeypatch, lambda output: output.write_bytes(archive.read_bytes()))
    from xautodl.bench.download import sha256_of

    wrong = "0" * 64
    with pytest.raises(SystemExit) as exit_info:
        main_guard(lambda: main(["download", "--sha256", wrong]))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"has SHA-256 {sha256_of(archive)}, not the {wrong} asked for (--sha256)" in err[0]
    assert not (torch_home / "NATS-tss-v1_0-3ffb9-simple").exists()
    # The refused archive stays for inspection; with the right digest it is unpacked.
    assert (torch_home / "NATS-tss-v1_0-3ffb9-simple.tar").is_file()
    target = download_benchmark("tss", sha256=sha256_of(archive).upper())
    check_results(open_benchmark(target).query(RESNET), 0, RESNET)


@pytest.mark.parametrize("sent", ["web page", "foreign member", "link"])
def test_download_refuses_what_is_not_a_benchmark_archive(torch_home, tmp_path, monkeypatch, sent):
    def write(output: Path) -> None:
        if sent == "web page":
            output.write_text("<html>Google Drive - quota exceeded</html>")
            return
        with tarfile.open(output, "w") as tar:
            tar.add(write_benchmark_folder(tmp_path / "source"), arcname="NATS-tss-v1_0-3ffb9-simple")
            if sent == "foreign member":
                (tmp_path / "evil.py").write_text("print('hi')\n")
                tar.add(tmp_path / "evil.py", arcname="NATS-tss-v1_0-3ffb9-simple/evil.py")
            else:
                link = tarfile.TarInfo("NATS-tss-v1_0-3ffb9-simple/000002.pickle.pbz2")
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(link)

    fake_drive(monkeypatch, write)
    with pytest.raises(DataError) as info:
        download_benchmark("tss")
    message = str(info.value)
    assert "\n" not in message and "delete it and download again" in message
    assert ("not a tar archive" in message) if sent == "web page" else ("not part of the NATS-Bench format" in message)
    assert not (torch_home / "NATS-tss-v1_0-3ffb9-simple").exists()
