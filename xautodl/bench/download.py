"""Fetch a NATS-Bench archive from Google Drive (with gdown) into $TORCH_HOME, check it and unpack it.

NATS-Bench publishes no checksum of its `-simple.tar` archives (the 5 hex digits in the names, e.g. 3ffb9, belong
to the single-file benchmark `NATS-tss-v1_0-3ffb9.pickle.pbz2`, not to the archive), so there is none to compare
with by default. What is checked: the archive holds only what the format has (`<folder>/meta.pickle.pbz2` and
`<folder>/<index>.pickle.pbz2` regular files), which also refuses an HTML page Drive sent instead of the file; and,
when the user passes one (`--sha256`), the archive's SHA-256. The files are read with an allow-list unpickler
later (`bench.nats`), so even a matching but crafted archive cannot run code.
"""
from __future__ import annotations

import hashlib
import os
import re
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


# The members a benchmark archive may hold, below its top folder.
_MEMBER = re.compile(r"(meta|\d+)\.pickle\.pbz2")


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


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(archive: Path, folder: str, sha256: str | None = None) -> None:
    """DataError (one line) unless `archive` is a tar of `folder`'s benchmark files only and, when `sha256` is
    given, has that SHA-256."""
    if sha256 is not None:
        found = sha256_of(archive)
        if found != sha256.strip().lower():
            raise DataError(f"{archive} has SHA-256 {found}, not the {sha256} asked for (--sha256): it is not that "
                            f"file (a damaged or substituted download); delete it and download again")
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError) as error:
        detail = str(error).splitlines()[-1].strip(" -")  # tarfile lists every compression it tried
        raise DataError(f"{archive} is not a tar archive ({detail}); it is not the NATS-Bench download (Drive may "
                        f"have sent a web page instead): delete it and download again") from None
    for member in members:
        parts = Path(member.name).parts
        inside = parts[1:] if parts and parts[0] == folder else None
        if member.isdir() and inside is not None and not inside:
            continue
        if not (member.isfile() and inside is not None and len(inside) == 1 and _MEMBER.fullmatch(inside[0])):
            raise DataError(f"{archive} holds {member.name!r}, which is not part of the NATS-Bench format (only "
                            f"{folder}/meta.pickle.pbz2 and {folder}/<index>.pickle.pbz2 files); it is not the "
                            f"NATS-Bench download: delete it and download again")


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


def download_benchmark(space: str = "tss", torch_home: str | os.PathLike | None = None,
                       sha256: str | None = None) -> Path:
    """Download, check (`verify_archive`, with `sha256` when given) and unpack the `space` ('tss' topology or 'sss'
    size) archive; return the unpacked folder.

    Nothing is fetched when the folder already exists. On failure raises DataError with the manual steps; an
    archive that fails the check is left where it is, and nothing is unpacked.
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
    verify_archive(archive, folder, sha256)
    target = _unpack(archive, folder, home)
    archive.unlink()
    print(f"unpacked the benchmark to {target}")
    return target
