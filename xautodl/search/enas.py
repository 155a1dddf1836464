"""ENAS on NAS-Bench-201 (Pham et al., "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018), as
the original tool runs it (`exps/NAS-Bench-201-algos/ENAS.py`; its controller is `search_model_enas_utils.py`):

- the controller: a 2-layer LSTM of 32 units that emits one op per edge, from logits squashed to
  2.5 * tanh(logits / 5), the embedding of each chosen op being its next input;
- weight step: the supernet restricted to one architecture the controller samples (gradient norm clipped at 5);
  the valid batch only measures that architecture;
- after every epoch, the controller phase (`train_controller`): `controller_train_steps` x
  `controller_num_aggregate` samples, each rewarded with its top-1 accuracy (a fraction) on one valid batch, the
  supernet in eval mode, plus `controller_entropy_weight` times the sample's entropy; REINFORCE loss
  -log_prob * (reward - baseline), averaged over `controller_num_aggregate` samples per Adam step (gradient norm
  clipped at 5). The baseline moves from the previous epoch's value towards the reward by 1 - `controller_bl_dec`;
  as in the original, every sample of an epoch starts from the previous epoch's value (the first epoch uses each
  sample's own accuracy), the reward keeps the entropy's gradient, and the epoch's last baseline is carried over;
- the reported architecture: the best of `controller_epoch_samples` (10) controller samples, and at the end of
  `controller_num_samples` (100), each scored on one valid batch (`get_best_arch`).

The controller's Adam takes `controller_lr`, `controller_betas` and `controller_eps` from the config (so the
architecture LR and weight decay flags do not apply to ENAS).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .algorithms import Batch
from ..runtime.distributed import sum_over_ranks
from .weight_sharing import OpIndices, WeightSharingSearch

CONTROLLER_GRAD_CLIP = 5.0


class Controller(nn.Module):
    """The ENAS controller over `num_edges` edges of `num_ops` candidate ops (the original's parameter names)."""

    def __init__(self, num_edges: int, num_ops: int, lstm_size: int = 32, lstm_layers: int = 2,
                 tanh_constant: float = 2.5, temperature: float = 5.0) -> None:
        super().__init__()
        self.num_edges, self.tanh_constant, self.temperature = num_edges, tanh_constant, temperature
        self.input_vars = nn.Parameter(torch.empty(1, 1, lstm_size))
        self.w_lstm = nn.LSTM(input_size=lstm_size, hidden_size=lstm_size, num_layers=lstm_layers)
        self.w_embd = nn.Embedding(num_ops, lstm_size)
        self.w_pred = nn.Linear(lstm_size, num_ops)
        # The original's initialisation: these five uniform in [-0.1, 0.1], the others PyTorch's defaults.
        for tensor in (self.input_vars, self.w_lstm.weight_hh_l0, self.w_lstm.weight_ih_l0, self.w_embd.weight,
                       self.w_pred.weight):
            nn.init.uniform_(tensor, -0.1, 0.1)

    def forward(self, generator: torch.Generator | None = None,
                arch: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, OpIndices]:
        """(sum of the log-probabilities, sum of the entropies, op of every edge) of an architecture drawn with
        `generator` (a CPU generator), or of `arch` when given."""
        inputs, state = self.input_vars, None
        log_prob, entropy, ops = 0.0, 0.0, []
        for edge in range(self.num_edges):
            outputs, state = self.w_lstm(inputs, state)
            logits = self.tanh_constant * torch.tanh(self.w_pred(outputs).view(-1) / self.temperature)
            log_p = F.log_softmax(logits, dim=-1)
            if arch is None:
                op = int(torch.multinomial(log_p.detach().exp().cpu(), 1, generator=generator))
            else:
                op = int(arch[edge])
            ops.append(op)
            log_prob = log_prob + log_p[op]
            entropy = entropy - (log_p.exp() * log_p).sum()
            inputs = self.w_embd(torch.tensor([[op]], device=logits.device))
        return log_prob, entropy, ops


class Baseline:
    """The REINFORCE baseline carried from one controller phase to the next (None before the first)."""

    def __init__(self) -> None:
        self.value: float | None = None

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class ENAS(WeightSharingSearch):
    """Config settings (the original's values when absent): `controller_lr` 0.001, `controller_betas` (0, 0.999),
    `controller_eps` 0.001, `controller_entropy_weight` 1e-4, `controller_bl_dec` 0.99, `controller_train_steps` 50,
    `controller_num_aggregate` 20, `controller_epoch_samples` 10, `controller_num_samples` 100."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.controller = Controller(self.num_edges, self.num_ops).to(self.device)
        betas = self.config.get("controller_betas") if self.config is not None else None
        # The controller replaces the supernet's unused alphas as what the architecture optimizer trains.
        self.a_optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.setting("controller_lr", 0.001),
                                            betas=tuple(float(b) for b in betas) if betas else (0.0, 0.999),
                                            eps=self.setting("controller_eps", 0.001))
        self.entropy_weight = self.setting("controller_entropy_weight", 1e-4)
        self.baseline_decay = self.setting("controller_bl_dec", 0.99)
        self.train_steps = self.setting("controller_train_steps", 50)
        self.num_aggregate = self.setting("controller_num_aggregate", 20)
        self.epoch_samples = self.setting("controller_epoch_samples", 10)
        self.final_samples = self.setting("controller_num_samples", 100)
        self.baseline = Baseline()

    def state_objects(self) -> dict[str, Any]:
        return {"controller": self.controller, "controller_baseline": self.baseline}

    def sample(self, count: int) -> list[OpIndices]:
        """`count` architectures drawn from the controller."""
        self.controller.eval()
        with torch.no_grad():
            return [self.controller(self.mixer.generator)[2] for _ in range(count)]

    def sample_arch(self) -> OpIndices:
        return self.sample(1)[0]

    def select_genotype(self, batches: Iterator[Batch], final: bool) -> tuple[Any, dict[str, float]]:
        return self.best_of(self.sample(self.final_samples if final else self.epoch_samples), batches)

    def accuracy(self, arch: Sequence[int], x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 accuracy (a fraction) of `arch` on a batch, over every process's batch under torchrun."""
        correct, images = sum_over_ranks(self.top1_counts(arch, x, y)).tolist()
        return correct / images

    def after_epoch(self, batches: Iterator[Batch]) -> dict[str, float]:
        """The controller phase (module docstring); its mean loss, accuracy (%), reward and entropy, and the
        baseline it leaves."""
        self.model.eval()
        self.controller.train()
        self.controller.zero_grad()
        previous = self.baseline.value
        sums = {"controller_loss": 0.0, "controller_acc": 0.0, "controller_reward": 0.0, "controller_entropy": 0.0}
        steps = self.train_steps * self.num_aggregate
        baseline: Any = previous
        for step in range(steps):
            log_prob, entropy, arch = self.controller(self.mixer.generator)
            accuracy = self.accuracy(arch, *next(batches))
            reward = accuracy + self.entropy_weight * entropy
            baseline = accuracy if previous is None else previous - (1 - self.baseline_decay) * (previous - reward)
            loss = -log_prob * (reward - baseline)
            (loss / self.num_aggregate).backward()
            if (step + 1) % self.num_aggregate == 0:
                nn.utils.clip_grad_norm_(self.controller.parameters(), CONTROLLER_GRAD_CLIP)
                self.a_optimizer.step()
                self.controller.zero_grad()
            for key, value in (("controller_loss", loss), ("controller_acc", 100.0 * accuracy),
                               ("controller_reward", reward), ("controller_entropy", entropy)):
                sums[key] += float(value.detach()) if torch.is_tensor(value) else value
        self.baseline.value = float(baseline.detach()) if torch.is_tensor(baseline) else baseline
        if not steps:
            return {}
        return {**{key: total / steps for key, total in sums.items()}, "controller_baseline": self.baseline.value}
