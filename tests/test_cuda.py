"""CUDA paths (run by benchmarks/gpu_check.sh on a GPU machine; skipped elsewhere)."""
from __future__ import annotations

import json

import pytest
import torch

from xautodl.datasets import BatchAugment, ImageTensors, TensorLoader, dataset_info
from xautodl.runtime import load_checkpoint
from xautodl.commands import search as cli
from xautodl.search.mixing import GumbelHardMixer

pytestmark = pytest.mark.cuda

TINY = ["--dataset", "digits", "--channel", "8", "--num_cells", "1", "--batch_size", "32", "--limit_batches", "4",
        "--device", "cuda", "--quiet", "--no_benchmark", "--rand_seed", "3"]


@pytest.mark.parametrize("algorithm, flags", [
    ("GDAS", []), ("GDAS", ["--amp", "bf16", "--channels_last"]), ("GDAS", ["--amp", "fp16"]),
    ("DARTS-V1", ["--amp", "fp16"]), ("DARTS-V2", []), ("DARTS-V2", ["--amp", "bf16"]),
])
def test_search_on_cuda(tmp_path, algorithm, flags):
    summary = cli.run(algorithm, TINY + ["--epochs", "2", "--save_dir", str(tmp_path / "run"), *flags])
    for entry in summary["history"]:
        assert 0 < entry["train_loss"] < 10 and 0 < entry["valid_loss"] < 10
    state = load_checkpoint(tmp_path / "run" / "checkpoint" / "seed-3-basic.pth")
    assert all(t.device.type == "cpu" for t in state["model"].values()), "checkpoints load on any machine"
    assert json.loads((tmp_path / "run" / "seed-3-summary.json").read_text())["search"]["final_genotype"].startswith("|")


def test_cuda_resume_restores_the_gumbel_generator():
    alphas = torch.randn(6, 5, device="cuda")
    mixer = GumbelHardMixer(tau=1.0, seed=7)
    mixer(alphas, ["a"] * 5)
    state = mixer.state_dict()
    expected = [mixer(alphas, ["a"] * 5).chosen_ops for _ in range(3)]
    restored = GumbelHardMixer(tau=1.0)
    restored.load_state_dict(state)
    assert [restored(alphas, ["a"] * 5).chosen_ops for _ in range(3)] == expected


def test_batch_augmentation_is_identical_on_cpu_and_cuda():
    generator = torch.Generator().manual_seed(0)
    data = ImageTensors(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=generator),
                        torch.randint(0, 10, (40,), generator=generator))
    augment = BatchAugment.for_dataset(dataset_info("cifar10"), train=True, cutout=16)
    batches = {}
    for device in ("cpu", "cuda"):
        loader = TensorLoader(data, 16, torch.device(device), augment, seed=5)
        loader.set_epoch(2)
        batches[device] = [(x.cpu(), y.cpu()) for x, y in loader]
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(batches["cpu"], batches["cuda"]):
        assert torch.equal(y_cpu, y_gpu) and torch.allclose(x_cpu, x_gpu, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_avg_pool_op_on_cuda_equals_its_cpu_form(stride):
    from xautodl.spaces.ops import AvgPool3x3

    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    x_gpu = x.detach().cuda().requires_grad_()
    on_cpu, on_gpu = AvgPool3x3(stride)(x), AvgPool3x3(stride)(x_gpu)
    assert torch.allclose(on_cpu, on_gpu.cpu(), atol=1e-5)
    upstream = torch.randn_like(on_cpu)
    grad_cpu, = torch.autograd.grad(on_cpu, x, upstream)
    grad_gpu, = torch.autograd.grad(on_gpu, x_gpu, upstream.cuda())
    assert torch.allclose(grad_cpu, grad_gpu.cpu(), atol=1e-5)
