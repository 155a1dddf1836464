"""The reference implementation (PyPI `xautodl==1.0.0`) beside our torch, for side-by-side benchmarks.

    python benchmarks/reference_env.py              # create it once (or reuse it) and check that it imports
    python benchmarks/reference_env.py --reinstall  # start over

The original library's metadata pins numpy<=1.19.5, which has no wheel for current Pythons, so it is installed
with `pip install --no-deps --target <dir>/site` (plus pyyaml, which its utilities import) and runs on the
interpreter that runs the harness: same Python, same torch, same numpy. The folder is
`~/.cache/xautodl/reference` unless `XAUTODL_REFERENCE_DIR` names another.

Both libraries are called `xautodl`, so the reference only ever runs in a child process started with `-I -S`
(no script folder, no user site, no `.pth` files, hence no editable install of ours) whose `sys.path` is set
explicitly: the chosen package root first, then the standard library and this interpreter's site-packages. The
child checks where `xautodl` came from and stops loudly if it is not the expected copy.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Sequence

REFERENCE_REQUIREMENT = "xautodl==1.0.0"
EXTRA_REQUIREMENTS = ("pyyaml>=5.0",)
DIR_VARIABLE = "XAUTODL_REFERENCE_DIR"
MARKER_NAME = "reference.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
SYS_PATH_VARIABLE = "XAUTODL_BENCH_SYS_PATH"  # read by `enter_isolated_path` in the child
ORIGIN_VARIABLE = "XAUTODL_BENCH_EXPECTED_ORIGIN"


class ReferenceUnavailable(RuntimeError):
    """The reference could not be installed (typically: no network); the message says what to do."""


def reference_dir() -> Path:
    """Folder holding the reference installation (`$XAUTODL_REFERENCE_DIR` or ~/.cache/xautodl/reference)."""
    override = os.environ.get(DIR_VARIABLE)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "xautodl" / "reference"


def _python_tag() -> str:
    return f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"


def _is_complete(root: Path) -> bool:
    marker = root / MARKER_NAME
    if not marker.is_file() or not (root / "site" / "xautodl" / "models" / "__init__.py").is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    # The folder may come from another machine or Python (the reference is pure Python; pyyaml falls back to its
    # pure-Python loader when its compiled extension does not fit), so only the requirement must match.
    return recorded.get("requirement") == REFERENCE_REQUIREMENT


def _pip_install(target: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
               "--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "20",
               REFERENCE_REQUIREMENT, *EXTRA_REQUIREMENTS]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-6:])
        raise ReferenceUnavailable(
            f"could not install the reference implementation ({REFERENCE_REQUIREMENT}) with pip; is PyPI "
            f"reachable? pip said:\n{tail}\nRun `python benchmarks/reference_env.py` once with network access, "
            f"or point ${DIR_VARIABLE} at a folder made by it (on any machine).")


def ensure_reference(root: Path | None = None, reinstall: bool = False, quiet: bool = False) -> Path:
    """Install the reference into `root` (default `reference_dir()`) unless a complete copy is there.

    Returns the folder to put first on the child's sys.path (`root/site`). The install goes to a temporary
    folder that is renamed into place at the end, so an interrupted install is never mistaken for a good one.
    """
    root = (root or reference_dir()).resolve()
    if reinstall and root.exists():
        shutil.rmtree(root)
    if _is_complete(root):
        return root / "site"
    if not quiet:
        print(f"installing the reference implementation {REFERENCE_REQUIREMENT} into {root} (once) ...",
              file=sys.stderr)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".reference-", dir=root.parent))
    try:
        _pip_install(staging / "site")
        (staging / MARKER_NAME).write_text(json.dumps(
            {"requirement": REFERENCE_REQUIREMENT, "extras": list(EXTRA_REQUIREMENTS), "python": _python_tag(),
             "interpreter": sys.executable}, indent=1))
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root / "site"


def _interpreter_site_dirs() -> list[str]:
    """This interpreter's package folders (site-packages, the user site, wherever torch and numpy are found, even
    through PYTHONPATH, which `-I` ignores), never a folder of our repository."""
    candidates = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        candidates.append(site.getusersitepackages())
    for name in ("torch", "numpy"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            candidates.append(str(Path(spec.origin).parent.parent))
    dirs: list[str] = []
    for path in candidates:
        resolved = Path(path).resolve()
        if resolved.is_dir() and not resolved.is_relative_to(REPO_ROOT) and str(resolved) not in dirs:
            dirs.append(str(resolved))
    return dirs


def isolated_env(package_root: Path, script_dir: Path) -> dict[str, str]:
    """Environment for an isolated child in which `package_root` is the only home of `xautodl`.

    `package_root` is the reference's site folder or our repository root; `script_dir` (the child script's
    folder, which must hold no `xautodl`) comes next so that the child can import this module.
    """
    package_root = package_root.resolve()
    env = dict(os.environ)
    env[SYS_PATH_VARIABLE] = json.dumps({"first": [str(package_root), str(script_dir.resolve())],
                                         "last": _interpreter_site_dirs()})
    env[ORIGIN_VARIABLE] = str(package_root / "xautodl")
    return env


def isolated_command(script: Path, args: Sequence[str], package_root: Path) -> tuple[list[str], dict[str, str]]:
    """Command line and environment running `script` isolated (see `isolated_env`).

    The script must call `enter_isolated_path()` before importing anything outside the standard library.
    """
    return [sys.executable, "-I", "-S", str(script), *args], isolated_env(package_root, Path(script).parent)


def enter_isolated_path() -> None:
    """In a child started by `isolated_command`: the chosen package root first on sys.path, the interpreter's
    package folders after the standard library, as in a normal start (a no-op in any other process)."""
    if SYS_PATH_VARIABLE not in os.environ:
        return
    paths = json.loads(os.environ[SYS_PATH_VARIABLE])
    sys.path[:0] = [p for p in paths["first"] if p not in sys.path]
    sys.path.extend(p for p in paths["last"] if p not in sys.path)


def import_checked_xautodl():
    """Import `xautodl` in the child and stop loudly unless it is the copy the parent asked for."""
    import xautodl

    expected = Path(os.environ[ORIGIN_VARIABLE]).resolve()
    found = Path(xautodl.__file__).resolve().parent
    if found != expected:
        raise SystemExit(f"benchmark isolation failed: `import xautodl` loaded {found}, expected {expected}; "
                         f"sys.path = {sys.path}")
    return xautodl


def _check_import(site_dir: Path) -> str:
    """Import the reference's model builders in an isolated child; returns what the child printed."""
    code = ("import sys, json, os; paths = json.loads(os.environ['%s']); "
            "sys.path[:0] = paths['first']; sys.path.extend(paths['last']); import xautodl, torch; "
            "from xautodl.models import get_cell_based_tiny_net; "
            "print(xautodl.version(), xautodl.__file__, 'torch', torch.__version__)" % SYS_PATH_VARIABLE)
    env = isolated_env(site_dir, Path(__file__).parent)
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ReferenceUnavailable(f"the reference in {site_dir} does not import:\n{result.stderr.strip()}")
    printed = result.stdout.strip()
    if not printed.split()[1].startswith(str(site_dir)):
        raise ReferenceUnavailable(f"isolation failed: the child imported {printed.split()[1]}, not {site_dir}")
    return printed


def main() -> None:
    parser = argparse.ArgumentParser(description="Create (once) and check the reference implementation's folder.")
    parser.add_argument("--dir", type=Path, default=None, help=f"folder (default ${DIR_VARIABLE} or "
                                                                "~/.cache/xautodl/reference)")
    parser.add_argument("--reinstall", action="store_true", help="remove the folder and install again")
    args = parser.parse_args()
    try:
        site_dir = ensure_reference(args.dir, reinstall=args.reinstall)
        print(f"reference ready in {site_dir}: {_check_import(site_dir)}")
    except ReferenceUnavailable as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
