"""The training loop itself (`xautodl.train.loop.Trainer`): the auxiliary head's weighted loss, the drop-path
schedule, gradient clipping, evaluation on named loaders, and the best checkpoint. A linear network on fixed
batches keeps every expected number computable by hand."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from xautodl.optim.schedules import CosineWithWarmup
from xautodl.runtime import RunLogger, load_checkpoint
from xautodl.runtime.run_record import RunFiles
from xautodl.train.loop import Trainer, TrainSettings

CLASSES = 7  # more than 5, so that top-5 differs from a certainty


class TinyNet(nn.Module):
    """A linear classifier with an optional auxiliary head (training mode only, as the NASNet networks) and a
    `drop_path_prob` that it records at every training forward."""

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(12, CLASSES)
        self.aux_head = nn.Linear(12, CLASSES) if aux else None
        self.drop_path_prob = 0.0
        self.seen_drop_path: list[float] = []

    def forward(self, images: torch.Tensor):
        features = images.flatten(1)
        logits = self.body(features)
        if not self.training:
            return logits
        self.seen_drop_path.append(self.drop_path_prob)
        return (logits, self.aux_head(features)) if self.aux_head is not None else logits


def batches(count: int, scale: float = 1.0, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 2, 2, generator=generator) * scale, torch.randint(0, CLASSES, (4,), generator=generator))
            for _ in range(count)]


def trainer(run_dir: Path, model: nn.Module, settings: TrainSettings, train: list, eval_loaders: dict,
            lr: float = 0.1, **options) -> Trainer:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Trainer(model, train, eval_loaders, optimizer, CosineWithWarmup(optimizer, settings.total_epochs),
                   nn.CrossEntropyLoss(), settings, RunFiles(run_dir, "seed-0"), {"seed": 0},
                   RunLogger(run_dir, "log.txt", tensorboard=False), **options)


def test_the_auxiliary_head_weighs_into_the_training_loss_and_never_into_evaluation(tmp_path):
    """loss = CE(logits) + aux_weight * CE(aux_logits) in training; evaluation sees the main logits only. At LR 0
    the network stays as built, so the epoch's means are computable here."""
    model, train, test = TinyNet(aux=True), batches(3), batches(2, seed=2)
    settings = TrainSettings(total_epochs=1, print_freq=0, aux_weight=0.4, progress=False)
    (entry,) = trainer(tmp_path, model, settings, train, {"test": test}, lr=0.0).fit()

    criterion = nn.CrossEntropyLoss()
    with torch.no_grad():
        features = [(images.flatten(1), labels) for images, labels in train]
        expected = [criterion(model.body(x), y) + 0.4 * criterion(model.aux_head(x), y) for x, y in features]
        expected_test = [criterion(model.body(images.flatten(1)), labels) for images, labels in test]
    assert entry["train_loss"] == pytest.approx(float(torch.stack(expected).mean()), rel=1e-6)
    assert entry["test_loss"] == pytest.approx(float(torch.stack(expected_test).mean()), rel=1e-6)

    without = trainer(tmp_path / "no-aux", TinyNet(aux=True), TrainSettings(total_epochs=1, print_freq=0, progress=False), train,
                      {}, lr=0.0)
    logits, aux_logits = model.train()(train[0][0])
    loss, main = without._loss((logits, aux_logits), train[0][1])
    assert main is logits and torch.equal(loss, criterion(logits, train[0][1])), "aux_weight 0: the head is ignored"


def test_drop_path_grows_linearly_from_zero_over_the_epochs(tmp_path):
    """Epoch e trains with drop_path_prob * e / epochs (the original's schedule): 0 in the first epoch."""
    model = TinyNet()
    settings = TrainSettings(total_epochs=4, print_freq=0, drop_path_prob=0.2, progress=False)
    trainer(tmp_path, model, settings, batches(2), {"test": batches(1)}).fit()
    assert model.seen_drop_path == pytest.approx([0.0] * 2 + [0.05] * 2 + [0.1] * 2 + [0.15] * 2)


@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
def test_gradients_are_clipped_to_the_norm_given_before_each_step(tmp_path, grad_clip):
    model = TinyNet()
    norms: list[float] = []

    def record_norm(optimizer, args, kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record_norm)
    try:
        settings = TrainSettings(total_epochs=1, print_freq=0, grad_clip=grad_clip, progress=False)
        trainer(tmp_path, model, settings, batches(3, scale=100.0), {}).fit()
    finally:
        handle.remove()
    assert len(norms) == 3
    if grad_clip:
        assert all(norm <= grad_clip * (1 + 1e-5) for norm in norms), norms
        assert max(norms) == pytest.approx(grad_clip, rel=1e-5), "large gradients are scaled down to the limit"
    else:
        assert min(norms) > 10 * 0.5, "the same batches' gradients, unclipped, are far above the limit"


def test_evaluation_reports_loss_top1_top5_and_count_over_the_limited_batches(tmp_path):
    model = TinyNet()
    loop = trainer(tmp_path, model, TrainSettings(total_epochs=1, print_freq=0, limit_batches=2, progress=False), batches(2), {})
    loader = batches(5, seed=3)
    result = loop.evaluate("valid", loader)

    with torch.no_grad():
        images = torch.cat([x for x, _ in loader[:2]]).flatten(1)
        labels = torch.cat([y for _, y in loader[:2]])
        logits = model.body(images)
    top5 = logits.topk(5, dim=1).indices.eq(labels.unsqueeze(1))
    assert set(result) == {"valid_loss", "valid_acc", "valid_top5", "valid_count"}
    assert result["valid_count"] == 8, "--limit_batches limits the evaluation too"
    assert result["valid_loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-6)
    assert result["valid_acc"] == pytest.approx(100.0 * float(top5[:, 0].float().mean()))
    assert result["valid_top5"] == pytest.approx(100.0 * float(top5.any(dim=1).float().mean()))
    assert not model.training, "evaluation runs the network in eval mode"


def test_the_best_checkpoint_holds_the_epoch_with_the_best_accuracy_on_best_on(tmp_path):
    """`best_on` names the loader whose top-1 accuracy chooses the best epoch (the first of equals); its
    checkpoint is written beside the last one, unless keep_best is off; without loaders there is no best."""
    settings = TrainSettings(total_epochs=4, print_freq=0, progress=False)
    loaders = {"valid": batches(2, seed=4), "test": batches(2, seed=5)}
    history = trainer(tmp_path / "run", TinyNet(), settings, batches(3), loaders, lr=0.5, best_on="valid").fit()
    valid = [entry["valid_acc"] for entry in history]
    best_epoch = valid.index(max(valid))
    files = RunFiles(tmp_path / "run", "seed-0")
    best, last = load_checkpoint(files.best), load_checkpoint(files.last)
    assert best["epoch"] == best_epoch and len(best["history"]) == best_epoch + 1
    assert last["best"] == best["best"] == {"epoch": best_epoch, "acc": max(valid), "on": "valid"}
    assert last["epoch"] == 3

    trainer(tmp_path / "no-best", TinyNet(), settings, batches(3), loaders, lr=0.5, best_on="valid",
            keep_best=False).fit()
    files = RunFiles(tmp_path / "no-best", "seed-0")
    assert not files.best.exists() and load_checkpoint(files.last)["best"]["epoch"] == best_epoch

    trainer(tmp_path / "no-loaders", TinyNet(), settings, batches(3), {}).fit()
    files = RunFiles(tmp_path / "no-loaders", "seed-0")
    assert not files.best.exists() and load_checkpoint(files.last)["best"] == {"epoch": -1, "acc": -1.0}
