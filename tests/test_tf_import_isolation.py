"""The PyTorch side never imports TensorFlow: importing every module outside `xautodl.tf` and the TensorFlow entry
point, and writing a TensorBoard scalar through the run logger (TensorBoard would import an installed TensorFlow
for its file I/O), leaves `tensorflow` (and keras) unloaded. Runs with or without TensorFlow installed."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO

CHECK = """
import importlib, pkgutil, sys
import xautodl
tf_side = ("xautodl.tf", "xautodl.commands.search_tf")
names = [m.name for m in pkgutil.walk_packages(xautodl.__path__, "xautodl.")
         if not m.name.startswith(tf_side)]
for name in names:
    importlib.import_module(name)
from xautodl.runtime import RunLogger
logger = RunLogger(sys.argv[1], quiet=True)  # TensorBoard events: TensorBoard must not import TensorFlow either
logger.scalar("probe", 1.0, 0)
logger.close()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print(len(names), loaded[:5])
"""


def test_no_pytorch_module_imports_tensorflow(tmp_path):
    result = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "run")], capture_output=True, text=True,
                            cwd=REPO, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.split(" ", 1)
    assert int(count) > 40  # every module of the package was imported
    assert loaded.strip() == "[]", f"imported TensorFlow: {loaded}"
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
