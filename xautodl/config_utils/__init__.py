"""The config format of the original tool: a JSON object of `"key": [type, value]` entries.

Types are str, int, float, bool and none; values are strings, numbers or flat lists of them
(`"LR": ["float", "0.025"]`, `"train": ["int", ["0", "5", ...]]`). `load_config` finds a file (in the working
directory or in the package's `configs/` folder), parses it, merges extra values and command-line overrides.
"""
from __future__ import annotations

from xautodl.config_utils.config import Config, MissingConfigKeyError
from xautodl.config_utils.loader import load_config, package_config_dir, resolve_config_path

__all__ = ["Config", "MissingConfigKeyError", "load_config", "package_config_dir", "resolve_config_path"]
