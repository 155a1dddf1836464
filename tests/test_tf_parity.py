"""The TensorFlow supernet computes what the PyTorch one computes (float64, same weights, same Gumbel noise).

Per compared tensor: max |tf - torch| <= 1e-10 * max |torch| + 1e-12 (`assert_close`). Compared: logits, the
alpha gradient and every weight gradient (GDAS and DARTS-V1, BN tracking on and off; a weight PyTorch gives no
gradient must be one the TensorFlow weight step masks out), BN running statistics after a forward, and the whole
state (weights, BN statistics, alphas, SGD momentum, Adam moments) after two search iterations of each algorithm
through the real steps: PyTorch's `SearchAlgorithm` against the `tf.function` steps of `xautodl.tf.search.TFSearch`.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xautodl.tf  # noqa: E402,F401  first: it loads what must come before TensorFlow (see xautodl/tf/__init__.py)

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install -e '.[tf]')")

from xautodl.search.registry import build_algorithm  # noqa: E402
from xautodl.search.mixing import GumbelHardMixer, SoftmaxMixer  # noqa: E402
from xautodl.spaces import nas201  # noqa: E402
from xautodl.tf.mixing import GumbelSample, SoftmaxSample  # noqa: E402
from xautodl.tf.nas201 import TFSupernet, to_torch_layout  # noqa: E402
from xautodl.tf.search import (GumbelNoise, TFSearch, TFSearchModel, TorchAdam, clip_by_total_norm,  # noqa: E402
                               criterion_from_config, sgd_from_config)

RTOL, ATOL = 1e-10, 1e-12
C, N, CLASSES, BATCH, SIZE = 4, 1, 5, 6, 8
CONFIG = {"LR": 0.025, "momentum": 0.9, "decay": 5e-4, "nesterov": True, "criterion": "Softmax"}


class Config(dict):
    """The optimisation config as `load_config` gives it (attribute and `get` access)."""

    __getattr__ = dict.__getitem__


def relative_error(tf_value, torch_value) -> float:
    a = np.asarray(tf_value, dtype=np.float64)
    b = torch_value.detach().double().numpy() if torch.is_tensor(torch_value) else np.asarray(torch_value)
    assert a.shape == b.shape
    return float(np.abs(a - b).max() / max(np.abs(b).max(), ATOL / RTOL)) if b.size else 0.0


def assert_close(tf_value, torch_value, what: str) -> None:
    a = np.asarray(tf_value, dtype=np.float64)
    b = torch_value.detach().double().numpy() if torch.is_tensor(torch_value) else np.asarray(torch_value)
    assert a.shape == b.shape, what
    assert np.abs(a - b).max() <= RTOL * np.abs(b).max() + ATOL, f"{what}: relative error {relative_error(a, b):.2e}"


def pair(track: bool, mixer, seed: int = 0, alphas: torch.Tensor | None = None):
    """A float64 PyTorch supernet and the TensorFlow one holding the same weights and alphas."""
    torch.manual_seed(seed)
    net = nas201.build_supernet(mixer, CLASSES, track_running_stats=track, C=C, N=N).double()
    with torch.no_grad():
        net.arch_parameters.copy_(torch.randn(6, 5, dtype=torch.float64) if alphas is None else alphas)
    tf_net = TFSupernet(C, N, CLASSES, track=track, dtype="float64")
    tf_net.load_state_dict(net.state_dict())
    return net, tf_net


def batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, CLASSES, (BATCH,), generator=generator)


def nhwc(x: torch.Tensor):
    return tf.constant(x.permute(0, 2, 3, 1).numpy())


def gumbel_draws(seed: int, count: int) -> list[torch.Tensor]:
    """The noise the PyTorch GDAS mixer seeded with `seed` draws in its first `count` samples."""
    generator = torch.Generator().manual_seed(seed)
    return [-torch.empty(6, 5, dtype=torch.float64).exponential_(generator=generator).log() for _ in range(count)]


def weight_names(tf_net: TFSupernet) -> list[str]:
    return [name for name, var, _ in tf_net.named_torch_variables() if var.trainable and name != "arch_parameters"]


def in_torch_layout(tf_net: TFSupernet, values) -> dict[str, np.ndarray]:
    """TensorFlow values (alphas, then weights in `weight_variables` order) by PyTorch name, in PyTorch's layout."""
    layouts = {name: layout for name, _, layout in tf_net.named_torch_variables()}
    names = ["arch_parameters", *weight_names(tf_net)]
    return {name: to_torch_layout(np.asarray(value), layouts[name]) for name, value in zip(names, values)
            if value is not None}


def forward_and_gradients(net, tf_net, x, y, tf_sample):
    """Logits and gradients (alphas, then weights by name) on both sides; the TF masks of the GDAS weight step."""
    params = [net.arch_parameters, *net.weights()]
    logits = net(x)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), params, allow_unused=True)
    names = [n for n, p in net.named_parameters() if n != "arch_parameters"]
    torch_grads = dict(zip(["arch_parameters", *names], grads))
    alphas = tf_net.alpha_variable
    with tf.GradientTape() as tape:
        sample = tf_sample(tf.convert_to_tensor(alphas))
        tf_logits = tf_net(nhwc(x), sample=sample)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(y.numpy()), tf_logits))
    tf_grads = tape.gradient(loss, [alphas, *tf_net.weight_variables],
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
    masks = tf_net.weight_masks(sample.index) if isinstance(sample, GumbelSample) else None
    return logits, torch_grads, tf_logits, in_torch_layout(tf_net, [g.numpy() for g in tf_grads]), masks


def check_gradients(torch_grads, tf_grads, masks, tf_net) -> None:
    assert set(torch_grads) == set(tf_grads)
    for name, grad in torch_grads.items():
        assert_close(tf_grads[name], torch.zeros(tf_grads[name].shape) if grad is None else grad, f"grad {name}")
    if masks is not None:
        given = [torch_grads[name] is not None for name in weight_names(tf_net)]
        assert [bool(m) for m in masks] == given, "the TF weight step masks exactly the weights PyTorch skips"


def check_state(net, tf_net) -> None:
    tf_state = tf_net.state_dict()
    for name, value in net.state_dict().items():
        assert_close(tf_state[name].numpy(), value, f"state {name}")


# The forced samples: the op index of every edge (edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; ops none, skip,
# conv1x1, conv3x3, avgpool): every op; a node 1 that only reaches the output through `none`; a cell whose output
# does not depend on its input (no non-none path 0 -> 3), so PyTorch gives nothing before the last cell a gradient.
FORCED = {"every-op": [3, 2, 4, 1, 2, 3], "dead-node-1": [3, 2, 0, 3, 0, 4], "no-path": [2, 3, 3, 0, 0, 0]}


@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("case", ["random-0", "random-1", *FORCED])
def test_gdas_logits_gradients_and_bn_statistics(track, case):
    tau = 2.0
    if case in FORCED:  # alphas whose samples are certain: a gap of 40 in logits beats any Gumbel noise here
        alphas = torch.randn(6, 5, dtype=torch.float64)
        alphas[range(6), FORCED[case]] += 40.0
        seed = 3
    else:
        alphas, seed = None, int(case[-1])
    mixer = GumbelHardMixer(tau=tau, seed=seed)
    net, tf_net = pair(track, mixer, seed, alphas)
    (noise,) = gumbel_draws(seed, 1)
    x, y = batch(seed)
    logits, torch_grads, tf_logits, tf_grads, masks = forward_and_gradients(
        net, tf_net, x, y, lambda a: GumbelSample(a, tf.constant(tau, tf.float64), tf.constant(noise.numpy()), True))
    if case in FORCED:
        chosen = GumbelSample(tf_net.alpha_variable, tau, tf.constant(noise.numpy()), True).index.numpy()
        assert chosen.tolist() == FORCED[case]
    assert_close(tf_logits, logits, "logits")
    check_gradients(torch_grads, tf_grads, masks, tf_net)
    assert any(g is None for g in torch_grads.values())  # unsampled ops: the masks are exercised
    check_state(net, tf_net)  # BN running statistics (and num_batches_tracked) after the forward


@pytest.mark.parametrize("track", [True, False])
def test_darts_logits_gradients_and_bn_statistics(track):
    net, tf_net = pair(track, SoftmaxMixer(), seed=7)
    x, y = batch(7)
    logits, torch_grads, tf_logits, tf_grads, _ = forward_and_gradients(
        net, tf_net, x, y, lambda a: SoftmaxSample(a, tf_net.op_names))
    assert_close(tf_logits, logits, "logits")
    check_gradients(torch_grads, tf_grads, None, tf_net)
    assert all(g is not None for g in torch_grads.values())
    check_state(net, tf_net)


def test_bn_eval_mode_uses_the_running_statistics():
    net, tf_net = pair(True, SoftmaxMixer(), seed=2)
    x, _ = batch(2)
    net(x)
    tf_net(nhwc(x), sample=SoftmaxSample(tf.convert_to_tensor(tf_net.alpha_variable), tf_net.op_names))
    net.eval()
    logits = net(x)
    tf_logits = tf_net(nhwc(x), sample=SoftmaxSample(tf.convert_to_tensor(tf_net.alpha_variable), tf_net.op_names),
                       training=False)
    assert_close(tf_logits, logits, "eval-mode logits")


@pytest.mark.slow  # about 15-20 s each, mostly tracing the two tf.function steps
@pytest.mark.parametrize("algorithm", ["GDAS", "DARTS-V1"])
def test_two_search_iterations_through_the_real_steps(algorithm):
    """Weight step (SGD, Nesterov, weight decay, norm clip 5) then architecture step (Adam), twice, with the LR
    changed in between, on both sides: every weight, BN statistic, alpha and optimiser slot agrees."""
    gdas, tau, seed = algorithm == "GDAS", 3.0, 11
    mixer = GumbelHardMixer(tau=tau, seed=seed) if gdas else SoftmaxMixer()
    net, tf_net = pair(True, mixer, seed)
    config = Config(CONFIG)
    w_optimizer = torch.optim.SGD(net.weights(), lr=config.LR, momentum=config.momentum, weight_decay=config.decay,
                                  nesterov=config.nesterov)
    a_optimizer = torch.optim.Adam(net.alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    algo = build_algorithm(algorithm, net, torch.nn.CrossEntropyLoss(), w_optimizer, a_optimizer, grad_clip=5.0)
    model = TFSearchModel(tf_net, GumbelNoise(tau, seed) if gdas else None)
    tf_algo = TFSearch(model, criterion_from_config(config), sgd_from_config(config, model.weights()),
                       TorchAdam(model.alphas(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3))
    noises = gumbel_draws(seed, 4) if gdas else [None] * 4
    for step, lr in enumerate((0.025, 0.5)):
        w_optimizer.param_groups[0]["lr"] = tf_algo.w_optimizer.param_groups[0]["lr"] = lr
        train, valid = batch(2 * step), batch(2 * step + 1)
        loss, logits = algo.weight_step(*train)
        a_loss, a_logits = algo.arch_step(train, valid)
        scalars = (tf.constant(lr, tf.float64), tf.constant(tau, tf.float64))
        weight_fn, arch_fn = tf_algo.traced_steps(nhwc(train[0]))
        tf_loss, tf_logits = weight_fn(nhwc(train[0]), tf.constant(train[1].numpy()), *scalars,
                                       _tf(noises[2 * step]))
        tf_a_loss, tf_a_logits = arch_fn(nhwc(valid[0]), tf.constant(valid[1].numpy()),
                                         tf.constant(3e-4, tf.float64), scalars[1], _tf(noises[2 * step + 1]))
        for what, ours, theirs in (("loss", tf_loss, loss), ("logits", tf_logits, logits),
                                   ("valid loss", tf_a_loss, a_loss), ("valid logits", tf_a_logits, a_logits)):
            assert_close(ours.numpy(), theirs, f"step {step} {what}")
        check_state(net, tf_net)
        names = [n for n, p in net.named_parameters() if n != "arch_parameters"]
        buffers = in_torch_layout(tf_net, [None, *[b.numpy() for b in tf_algo.w_optimizer.buffers]])
        for name, param in zip(names, net.weights()):
            torch_buffer = w_optimizer.state.get(param, {}).get("momentum_buffer")
            assert_close(buffers[name], torch.zeros(param.shape) if torch_buffer is None else torch_buffer,
                         f"momentum {name}")
        adam = a_optimizer.state[net.arch_parameters]
        assert_close(tf_algo.a_optimizer.exp_avg[0].numpy(), adam["exp_avg"], "adam exp_avg")
        assert_close(tf_algo.a_optimizer.exp_avg_sq[0].numpy(), adam["exp_avg_sq"], "adam exp_avg_sq")
    if gdas:  # some weights were skipped by PyTorch (no gradient): their momentum stayed zero on both sides
        assert any(w_optimizer.state.get(p, {}).get("momentum_buffer") is None for p in net.weights())
    # The loop's entry points (torch batches in and out) with a smaller batch, as an epoch's last one: no new trace.
    x, y = batch(9)
    loss, logits = tf_algo.weight_step(x[:3], y[:3])
    tf_algo.arch_step((x[:3], y[:3]), (x[3:5], y[3:5]))
    assert logits.shape == (3, CLASSES) and torch.isfinite(loss)
    assert [f.experimental_get_tracing_count() for f in tf_algo.traced_steps(nhwc(x))] == [1, 1]


def _tf(noise):
    return tf.zeros((6, 5), tf.float64) if noise is None else tf.constant(noise.numpy())  # DARTS: unused


def test_gradient_clipping_follows_torch():
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=generator, dtype=torch.float64) * 4 for _ in range(3)]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    clipped = clip_by_total_norm([tf.constant(g.numpy()) for g in grads], 5.0)
    for ours, p in zip(clipped, params):
        assert_close(ours.numpy(), p.grad, "clipped gradient")


def test_tf_state_dict_loads_into_the_pytorch_supernet():
    net, tf_net = pair(True, SoftmaxMixer(), seed=4)
    x, _ = batch(4)
    tf_net(nhwc(x), sample=SoftmaxSample(tf.convert_to_tensor(tf_net.alpha_variable), tf_net.op_names))
    fresh = nas201.build_supernet(SoftmaxMixer(), CLASSES, C=C, N=N).double()
    fresh.load_state_dict(tf_net.state_dict())  # strict: same names, shapes and dtypes (int64 batch counts)
    assert int(fresh.state_dict()["stem.1.num_batches_tracked"]) == 1
    with pytest.raises(RuntimeError, match="Missing key"):
        tf_net.load_state_dict({k: v for k, v in net.state_dict().items() if k != "classifier.bias"})


if os.environ.get("OMP_NUM_THREADS"):  # keep TensorFlow to the threads the test run was given
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["OMP_NUM_THREADS"]))
    except RuntimeError:
        pass  # TensorFlow already started in this process (another test module)
