"""Metric accumulation on the device: no host sync per step, one read per report."""
from __future__ import annotations

import torch

from ..runtime.distributed import sum_over_ranks


class DeviceMeter:
    """Sums of loss, top-1 and top-5 hits and sample counts per named stream (e.g. "train", "valid").

    `add` only queues device work; `read` moves everything to the host at once (and sums across ranks when
    torch.distributed is initialised).
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, name: str, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Account one batch: `loss` is the batch mean, `logits` (B, classes), `targets` (B,)."""
        batch = targets.shape[0]
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(targets.unsqueeze(1))
        row = torch.stack([
            loss.detach().float() * batch,
            hits[:, 0].sum().float(),
            hits.any(dim=1).sum().float(),
        ])
        self._sums[name] = row if name not in self._sums else self._sums[name] + row
        self._counts[name] = self._counts.get(name, 0) + batch

    def state_dict(self) -> dict:
        """This process's sums and counts as plain data (for a mid-epoch checkpoint)."""
        return {"sums": {name: row.detach().cpu() for name, row in self._sums.items()}, "counts": dict(self._counts)}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        """Continue from `state_dict()`'s sums (put on `device`, where the batches' rows are)."""
        self._sums = {name: row.to(device) for name, row in state["sums"].items()}
        self._counts = {name: int(count) for name, count in state["counts"].items()}

    def read(self, all_ranks: bool = True) -> dict[str, float]:
        """`{name}_loss`, `{name}_acc` (top-1 %), `{name}_top5` (%) and `{name}_count` for every stream.

        With `all_ranks` (a collective call: every process must make it) the sums cover every process of a
        torchrun job; otherwise only this process's batches.
        """
        if not self._sums:
            return {}
        names = sorted(self._sums)
        sums = torch.stack([self._sums[n] for n in names])
        counts = torch.tensor([float(self._counts[n]) for n in names], device=sums.device).unsqueeze(1)
        table = torch.cat([sums, counts], dim=1)
        if all_ranks:
            sum_over_ranks(table)
        result: dict[str, float] = {}
        for name, (loss_sum, top1, top5, count) in zip(names, table.tolist()):
            count = max(count, 1.0)
            result.update({f"{name}_loss": loss_sum / count, f"{name}_acc": 100.0 * top1 / count,
                           f"{name}_top5": 100.0 * top5 / count, f"{name}_count": int(count)})
        return result

    def format(self) -> str:
        """This process's running metrics as one line (no collective call, safe to use on one rank)."""
        values = self.read(all_ranks=False)
        names = sorted({k.rsplit("_", 1)[0] for k in values})
        return " | ".join(f"{n} loss {values[n + '_loss']:.3f} acc {values[n + '_acc']:.2f}%" for n in names)
