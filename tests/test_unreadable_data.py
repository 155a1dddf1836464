"""Data the user cannot read (permissions, decompression bombs): one `error:` line that says which file and what
to do, before any checkpoint is written."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from run_helpers import TWO_STEP_SEARCH, last_checkpoint, one_error_line, run_search

# The tests run as root here, for whom chmod denies nothing; the denial is therefore simulated where the readers
# meet the file system (os.access, open, iterdir), with the PermissionError the kernel gives a user.


def _denied(path) -> PermissionError:
    return PermissionError(errno.EACCES, "Permission denied", str(path))

def test_data_folder_without_read_permission(tmp_path, monkeypatch, capsys):
    import fakedata
    from xautodl.datasets import roots

    root = fakedata.write_cifar10(tmp_path / "cifar.python", n_train=32, n_test=16)
    folder = root / "cifar-10-batches-py"
    real_access = roots.os.access
    monkeypatch.setattr(roots.os, "access", lambda path, mode: Path(path) != folder and real_access(path, mode))
    run_dir = tmp_path / "run"
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--dataset", "cifar10", "--data_path", str(root),
                                                 "--save_dir", str(run_dir), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1
    assert line == (f"error: cannot read {folder}: permission denied; give your user read access to the data "
                    "(chmod -R u+rX on its folder) or copy it to a folder you can read, and pass --data_path")
    assert not last_checkpoint(run_dir).exists()

def test_data_file_without_read_permission(tmp_path, monkeypatch, capsys):
    import builtins

    import fakedata
    from xautodl.datasets import pickled

    root = fakedata.write_cifar10(tmp_path / "cifar.python", n_train=32, n_test=16)
    locked = root / "cifar-10-batches-py" / "data_batch_2"

    def guarded_open(file, *args, **kwargs):
        if Path(file) == locked:
            raise _denied(file)
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(pickled, "open", guarded_open, raising=False)
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--dataset", "cifar10", "--data_path", str(root),
                                                 "--save_dir", str(tmp_path / "run"), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1 and line.startswith(f"error: cannot read {locked}: permission denied;"), line

def test_image_folder_without_read_permission(tmp_path, monkeypatch, capsys):
    import fakedata

    root = fakedata.write_image_folder(tmp_path / "images")
    locked = sorted((root / "train").iterdir())[1]  # one class folder of the images the search reads
    real_iterdir = Path.iterdir

    def guarded_iterdir(self):
        if self == locked:
            raise _denied(self)
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", guarded_iterdir)
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--dataset", "folder", "--data_path", str(root),
                                                 "--save_dir", str(tmp_path / "run"), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1 and line.startswith(f"error: cannot read {locked}: permission denied;"), line

@pytest.mark.parametrize("over", ["past the limit (PIL warns)", "past twice the limit (PIL refuses)"])
def test_decompression_bomb_in_an_image_folder(tmp_path, monkeypatch, capsys, over):
    import fakedata
    from PIL import Image

    root = fakedata.write_image_folder(tmp_path / "images", size=20)
    bomb = sorted((root / "train").rglob("*.png"))[1]
    Image.new("RGB", (60, 60)).save(bomb)  # 3600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000 if over.startswith("past the") else 1000)
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--dataset", "folder", "--data_path", str(root),
                                                 "--save_dir", str(tmp_path / "run"), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"error: image {bomb} has more pixels than PIL's decompression-bomb limit"), line
    assert "remove it, or shrink it" in line
