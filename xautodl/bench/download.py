"""Fetch a NATS-Bench archive from Google Drive (with gdown) into $TORCH_HOME and unpack it."""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from ..errors import DataError
from .nats import default_torch_home

# space -> (folder the archive unpacks to, Google Drive file id of `<folder>.tar`)
ARCHIVES: dict[str, tuple[str, str]] = {
    "tss": ("NATS-tss-v1_0-3ffb9-simple", "17_saCsj_krKjlCBLOJEpNtzPXArMCqxU"),
    "sss": ("NATS-sss-v1_0-50262-simple", "1scOMTUwcQhAMa_IMedp9lTzwmgqHLGgA"),
}


def drive_url(file_id: str) -> str:
    """The Google Drive download address of a file id."""
    return f"https://drive.google.com/uc?id={file_id}"


def _manual_steps(folder: str, file_id: str, home: Path) -> str:
    return (f"download {drive_url(file_id)} ({folder}.tar) by hand, then unpack it with "
            f"`tar -xf {folder}.tar -C {home}` so that {home / folder}/ exists "
            "(set TORCH_HOME to use another folder)")


def _fetch(file_id: str, archive: Path, folder: str, home: Path) -> None:
    import gdown

    partial = archive.with_name(archive.name + ".part")
    try:
        result = gdown.download(id=file_id, output=str(partial), quiet=False, resume=True)
    except Exception as error:  # gdown surfaces network, quota and HTML-page failures as assorted exceptions
        raise DataError(f"could not download {folder}.tar ({type(error).__name__}: {error}); "
                        f"{_manual_steps(folder, file_id, home)}") from error
    if result is None or not partial.is_file():
        raise DataError(f"could not download {folder}.tar; {_manual_steps(folder, file_id, home)}")
    os.replace(partial, archive)


def _unpack(archive: Path, folder: str, home: Path) -> Path:
    # Unpack beside the target and rename at the end, so an interrupted unpack never looks like a benchmark.
    staging = home / f".{folder}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"cannot unpack {archive} ({error!r}); delete it and run the download again") from error
    unpacked = staging / folder if (staging / folder).is_dir() else staging
    target = home / folder
    os.replace(unpacked, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def download_benchmark(space: str = "tss", torch_home: str | os.PathLike | None = None) -> Path:
    """Download and unpack the `space` ('tss' topology or 'sss' size) archive; return the unpacked folder.

    Nothing is fetched when the folder already exists. On failure raises DataError with the manual steps.
    """
    if space not in ARCHIVES:
        raise DataError(f"unknown NATS-Bench space {space!r}; choose one of {', '.join(ARCHIVES)}")
    folder, file_id = ARCHIVES[space]
    home = Path(torch_home) if torch_home is not None else default_torch_home()
    target = home / folder
    if target.is_dir():
        print(f"{target} already exists; nothing to download")
        return target
    home.mkdir(parents=True, exist_ok=True)
    archive = home / f"{folder}.tar"
    if not archive.is_file():
        _fetch(file_id, archive, folder, home)
    target = _unpack(archive, folder, home)
    archive.unlink()
    print(f"unpacked the benchmark to {target}")
    return target
