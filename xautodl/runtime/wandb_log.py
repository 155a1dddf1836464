"""Weights & Biases beside TensorBoard (`--wandb`): the wandb part of `RunLogger`.

One wandb run per logger run (a seed of a search, a setting of train-a-net), named `<run folder>/<stem>` and grouped
by the run folder, with the run's settings as its config. Its history steps are epochs, as TensorBoard's are.

- Resume: the loop keeps the wandb run's id in its checkpoints (`wandb_run_id`) and hands it back to `begin`, so a
  resumed search continues the same wandb run (offline too: each session writes its own folder under the same id,
  and `wandb sync` of those folders uploads one run).
- Every epoch once: an epoch's points are held until the loop says that epoch is checkpointed (`commit`), and
  dropped when the session ends before that. A resumed run starts after its last checkpointed epoch, so no epoch
  is sent twice (TensorBoard gets the same effect from `purge_step`; wandb's history cannot be rewound offline).
- Offline: wandb's own `WANDB_MODE` decides; when it is unset and no API key is configured (`wandb login`,
  `WANDB_API_KEY`), the run logs offline, and `finish` returns the `wandb sync` command for its folders.
"""
from __future__ import annotations

import argparse
import importlib.util
import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import XAutoDLError

INSTALL_HINT = "--wandb needs the wandb package: pip install 'xautodl[wandb]' (or pip install wandb)"
DEFAULT_PROJECT = "xautodl"


@dataclass(frozen=True)
class WandbOptions:
    """Where a run's wandb runs go and what config they carry."""

    project: str
    entity: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


def wandb_options(args: argparse.Namespace, config: Mapping[str, Any]) -> WandbOptions | None:
    """The options of `--wandb` (None without it), with `config` as the runs' config. Stops with one line when the
    wandb package is missing (on every process, so that a torchrun job stops as a whole)."""
    if not getattr(args, "wandb", False):
        return None
    if importlib.util.find_spec("wandb") is None:
        raise XAutoDLError(INSTALL_HINT)
    project = args.wandb_project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
    return WandbOptions(project, args.wandb_entity or os.environ.get("WANDB_ENTITY"), dict(config))


def has_api_key() -> bool:
    """Whether wandb can authenticate: WANDB_API_KEY, or a netrc entry for its server (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


@dataclass
class _Run:
    """One open wandb run and the points waiting for their epoch's checkpoint (step -> key -> value)."""

    handle: Any
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)


class WandbRuns:
    """The wandb runs of one logger, by run folder (the TensorBoard event folder, which names the run)."""

    def __init__(self, options: WandbOptions, wandb_dir: Path, say: Callable[[str], None]) -> None:
        import wandb

        self._wandb = wandb
        self.options = options
        self.wandb_dir = Path(os.environ.get("WANDB_DIR") or wandb_dir)
        self._say = say
        self._runs: dict[Path, _Run] = {}
        self._ids: dict[Path, str] = {}
        self._mode = self._choose_mode()

    def begin(self, folder: Path, run_id: str | None = None) -> str:
        """Open the wandb run of `folder` (continuing run `run_id` when given); returns its id."""
        if folder in self._runs:
            return self._ids[folder]
        self._finish_others(folder)
        self.wandb_dir.mkdir(parents=True, exist_ok=True)
        try:
            handle = self._init(folder, run_id)
        except Exception as error:  # wandb's errors for an unreachable or refusing server have no common base
            if self._mode != "online":
                raise
            self._say(f"wandb: cannot log online ({str(error).splitlines()[0] if str(error) else error!r}); "
                      "logging offline")
            self._mode = "offline"
            handle = self._init(folder, run_id)
        # Resumed with --resume_with_new_settings: the new values replace the old ones.
        handle.config.update(dict(self.options.config), allow_val_change=True)
        self._runs[folder] = _Run(handle)
        self._ids[folder] = handle.id
        verb = "continues" if run_id else "started"
        self._say(f"wandb run {handle.id} {verb} ({self._mode}; project {self.options.project})")
        return handle.id

    def _init(self, folder: Path, run_id: str | None) -> Any:
        """wandb.init for `folder` (`<run_dir>/tensorboard/<stem>`: named `<run_dir name>/<stem>`, grouped by run
        folder); console capture off: the logger already writes the run's log."""
        group = folder.parent.parent.name
        return self._wandb.init(
            project=self.options.project, entity=self.options.entity, dir=str(self.wandb_dir),
            name=f"{group}/{folder.name}", group=group, id=run_id, resume="allow" if run_id else None,
            mode=self._mode, settings=self._wandb.Settings(console="off", silent=True), reinit="finish_previous")

    def stage(self, folder: Path, values: Mapping[str, Any], step: int) -> None:
        """Hold points of epoch `step` until `commit` says it is checkpointed."""
        self._run(folder).pending.setdefault(step, {}).update(values)

    def table(self, folder: Path, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        """Hold a table (as of epoch `step`) with that epoch's points."""
        self.stage(folder, {key: self._wandb.Table(columns=columns, data=rows)}, step)

    def commit(self, folder: Path, step: int) -> None:
        """Send the held points of every epoch up to `step` (now checkpointed)."""
        run = self._runs.get(folder)
        if run is None:
            return
        for held in sorted(s for s in run.pending if s <= step):
            run.handle.log(run.pending.pop(held), step=held)

    def image(self, folder: Path, key: str, path: Path) -> None:
        """Log an image file now (a final drawing)."""
        self._run(folder).handle.log({key: self._wandb.Image(str(path))})

    def finish(self) -> list[str]:
        """Finish every run (points never checkpointed are dropped); returns the log lines to end with."""
        lines = []
        for folder in list(self._runs):
            lines += self._finish(folder)
        return lines

    def _run(self, folder: Path) -> _Run:
        if folder not in self._runs:
            self.begin(folder, self._ids.get(folder))
        return self._runs[folder]

    def _finish_others(self, folder: Path) -> None:
        """wandb keeps one current run per process: a logger moving on to its next run (train-a-net's next seed)
        finishes the previous one, whose points are all committed by then."""
        for other in [f for f in self._runs if f != folder]:
            for line in self._finish(other):
                self._say(line)

    def _finish(self, folder: Path) -> list[str]:
        run = self._runs.pop(folder)
        run.handle.finish()
        if self._mode == "disabled":
            return []
        if self._mode == "online":
            return [f"wandb run {run.handle.id}: {run.handle.url}"]
        sessions = sorted(self.wandb_dir.glob(f"wandb/offline-run-*-{run.handle.id}"))
        return [f"wandb run {run.handle.id} was logged offline; upload it with: "
                f"wandb sync {' '.join(str(s) for s in sessions)}"]

    def _choose_mode(self) -> str:
        mode = os.environ.get("WANDB_MODE", "").strip().lower()
        if mode in ("offline", "dryrun"):
            return "offline"
        if mode == "disabled":
            return "disabled"
        if mode or has_api_key():
            return "online"
        self._say("wandb: no API key configured (wandb login, or WANDB_API_KEY): logging offline")
        return "offline"
