"""Learning-rate schedule shared by the search loop and the training loop (one owner)."""
from __future__ import annotations

import math

import torch

from ..errors import ConfigError


class CosineWithWarmup:
    """Linear warmup over `warmup` epochs (updated every step), then cosine from the base LR to `eta_min` over
    `epochs` epochs (updated once per epoch, as the original tool does); `eta_min` after that. A `t_max` (the
    original config's `T_max`, ENAS's 10) sets the cosine's half period in epochs instead of `epochs`: the LR then
    goes down and up again within the run, as the original's scheduler does.

    `set_position(epoch, fraction)` sets the LR of every param group for step `fraction` (0 <= fraction < 1) of
    epoch `epoch`; epochs count from 0 and include the warmup epochs.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, warmup: int = 0, eta_min: float = 0.0,
                 scheduler: str = "cos", t_max: int | None = None) -> None:
        if scheduler != "cos":
            raise ConfigError(f"the config asks for the LR scheduler {scheduler!r}; only the cosine schedule of the "
                              f"original configs ('cos') is supported")
        self.optimizer = optimizer
        self.epochs, self.warmup, self.eta_min, self.t_max = epochs, warmup, eta_min, t_max
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]

    def settings(self) -> dict[str, float]:
        """What a resumed run must share with this schedule, beside the optimizer's start LR and the epochs (more
        epochs extend a run)."""
        settings = {"schedule.warmup": self.warmup, "schedule.eta_min": self.eta_min}
        if self.t_max is not None:
            settings["schedule.t_max"] = self.t_max
        return settings

    def lr_at(self, base_lr: float, epoch: int, fraction: float = 0.0) -> float:
        """LR for a param group whose base LR is `base_lr`, at step `fraction` of epoch `epoch`."""
        if epoch < self.warmup:
            return base_lr * (epoch + fraction) / self.warmup
        cosine_epoch = epoch - self.warmup
        if cosine_epoch >= self.epochs:
            return self.eta_min
        period = self.epochs if self.t_max is None else self.t_max
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * cosine_epoch / period)) / 2

    def set_position(self, epoch: int, fraction: float = 0.0) -> float:
        """Apply the schedule for (epoch, fraction) to the optimizer; returns the first group's LR."""
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base_lr, epoch, fraction)
        return self.optimizer.param_groups[0]["lr"]

    @property
    def total_epochs(self) -> int:
        """Warmup and cosine epochs together: how many epochs a run with this schedule trains."""
        return self.warmup + self.epochs


def schedule_from_config(optimizer: torch.optim.Optimizer, config) -> CosineWithWarmup:
    """The schedule a config describes: `scheduler` (cos), `epochs`, `warmup` (default 0), `eta_min` (default 0),
    `T_max` (default: `epochs`)."""
    t_max = config.get("T_max")
    return CosineWithWarmup(optimizer, int(config.epochs), int(config.get("warmup") or 0),
                            float(config.get("eta_min") or 0.0), scheduler=str(config.get("scheduler") or "cos"),
                            t_max=None if t_max is None else int(t_max))
