"""The non-editable install: a wheel built from the checkout holds every library module and its data files."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def library_modules() -> list[str]:
    """Every module of the package in the checkout, as dotted names."""
    return sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for path in (ROOT / "xautodl").rglob("*.py"))


def test_the_wheel_installs_and_imports_every_module_outside_the_checkout(tmp_path):
    source = tmp_path / "source"  # a copy of the checkout's files, so the build leaves no build/ or egg-info here
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel, = (tmp_path / "dist").glob("xautodl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(".".join(Path(n).with_suffix("").parts).removesuffix(".__init__")
                      for n in names if n.endswith(".py"))
    assert packaged == library_modules(), "modules missing from the wheel (a folder without __init__.py?)"
    assert any(n.startswith("xautodl/configs/nas-benchmark/") for n in names), "the split files are not packaged"

    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    # -I and another working directory: neither the checkout nor PYTHONPATH is on sys.path; the installed copy
    # comes first, before the interpreter's site-packages (torch, the dependencies; any editable install's path
    # hook sits after the path finder, so it is not consulted for a package the path finder found).
    code = ("import importlib, sys, site\n"
            f"sys.path.insert(0, {str(target)!r})\n"
            "import xautodl\n"
            f"assert xautodl.__file__.startswith({str(target)!r}), xautodl.__file__\n"
            "import importlib.util\n"
            "have_tf = importlib.util.find_spec('tensorflow') is not None\n"  # xautodl.tf.* need the tf extra
            f"for name in {library_modules()!r}:\n"
            "    if have_tf or not name.startswith('xautodl.tf.'):\n"
            "        importlib.import_module(name)\n"
            "from xautodl.config_utils.loader import load_config, resolve_config_path\n"
            "load_config(resolve_config_path('configs/nas-benchmark/algos/GDAS.config'))\n"
            "print('imported', len(sys.modules))\n")
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr[-3000:]
