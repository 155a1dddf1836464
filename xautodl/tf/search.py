"""The TensorFlow search: optimisers with `torch.optim`'s update rules, the weight and architecture steps as
`tf.function`s, and the adapters through which the one search loop (`xautodl.search.loop.SearchLoop`) drives them.

The loop sees the same interfaces as with PyTorch: a model with `weights()`, `alphas()`, `genotype()`, `set_tau()`,
`alpha_table()`, `train()` and a state dict of torch tensors (so the epoch skeleton checkpoints, checks finiteness
and resumes it unchanged); an algorithm with `weight_step`, `arch_step`, `w_optimizer` and `a_optimizer`; optimisers
with `param_groups` (so the LR schedule sets their LR) and state dicts; a mixer with a state dict (the Gumbel noise
generator's state, so a resumed search draws the noise an uninterrupted one draws).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..search.algorithms import OptionalPhases
from ..spaces.nas201 import Arch, edge_list
from .mixing import GumbelSample, SoftmaxSample, gumbel_noise
from .nas201 import TFSupernet

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: coefficient max_norm / (total_norm + 1e-6)


def _state_tensor(variable: tf.Variable) -> torch.Tensor:
    return torch.from_numpy(np.array(variable.numpy(), order="C"))


class TorchSGD:
    """torch.optim.SGD (momentum, dampening 0, coupled weight decay, optional Nesterov) over TensorFlow variables.

    Keras' SGD keeps lr * velocity, so its trajectory differs from PyTorch's whenever the LR changes; this keeps
    PyTorch's buffer. `apply` takes per-variable masks: a masked-out variable (one PyTorch gives no gradient) keeps
    its value and its momentum, as `torch.optim` skips a parameter whose gradient is None.
    """

    def __init__(self, variables: Sequence[tf.Variable], lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        self.variables = list(variables)
        self.param_groups = [{"lr": float(lr), "momentum": float(momentum), "weight_decay": float(weight_decay),
                              "nesterov": bool(nesterov)}]
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)
        self.buffers = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]

    def apply(self, grads: Sequence[tf.Tensor], lr: tf.Tensor, masks: Sequence[tf.Tensor] | None = None) -> None:
        for k, (var, grad, buf) in enumerate(zip(self.variables, grads, self.buffers)):
            d = grad + self.weight_decay * var if self.weight_decay else grad
            if self.momentum:
                new_buf = self.momentum * buf + d  # a zero buffer gives d: PyTorch's first-step clone of d
                d = d + self.momentum * new_buf if self.nesterov else new_buf
            new_var = var - lr * d
            if masks is not None:
                new_var = tf.where(masks[k], new_var, var)
                if self.momentum:
                    new_buf = tf.where(masks[k], new_buf, buf)
            if self.momentum:
                buf.assign(new_buf)
            var.assign(new_var)

    def state_dict(self) -> dict:
        return {"param_groups": [dict(g) for g in self.param_groups],
                "momentum_buffer": [_state_tensor(b) for b in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        self.param_groups = [dict(g) for g in state["param_groups"]]
        for buf, value in zip(self.buffers, state["momentum_buffer"], strict=True):
            buf.assign(value.numpy())


class TorchAdam:
    """torch.optim.Adam (coupled L2 weight decay, no amsgrad) over TensorFlow variables, with PyTorch's placement of
    eps (sqrt(v) / sqrt(1 - beta2^t) + eps; Keras adds eps to sqrt(v) before the bias correction)."""

    def __init__(self, variables: Sequence[tf.Variable], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.variables = list(variables)
        self.param_groups = [{"lr": float(lr), "betas": tuple(betas), "eps": float(eps),
                              "weight_decay": float(weight_decay)}]
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.exp_avg = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.exp_avg_sq = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.step = tf.Variable(0.0, dtype=tf.float64, trainable=False)

    def apply(self, grads: Sequence[tf.Tensor], lr: tf.Tensor) -> None:
        self.step.assign_add(1.0)
        # In float64, as PyTorch computes the bias corrections from its step count on the host.
        bias1 = 1.0 - tf.pow(tf.constant(self.beta1, tf.float64), self.step)
        bias2_sqrt = tf.sqrt(1.0 - tf.pow(tf.constant(self.beta2, tf.float64), self.step))
        for var, grad, m, v in zip(self.variables, grads, self.exp_avg, self.exp_avg_sq):
            g = grad + self.weight_decay * var if self.weight_decay else grad
            m.assign(m + (1 - self.beta1) * (g - m))  # exp_avg.lerp_(grad, 1 - beta1)
            v.assign(self.beta2 * v + (1 - self.beta2) * g * g)
            denom = tf.sqrt(v) / tf.cast(bias2_sqrt, var.dtype) + self.eps
            var.assign(var - tf.cast(tf.cast(lr, tf.float64) / bias1, var.dtype) * m / denom)

    def state_dict(self) -> dict:
        return {"param_groups": [dict(g, betas=list(g["betas"])) for g in self.param_groups],
                "step": float(self.step.numpy()), "exp_avg": [_state_tensor(m) for m in self.exp_avg],
                "exp_avg_sq": [_state_tensor(v) for v in self.exp_avg_sq]}

    def load_state_dict(self, state: dict) -> None:
        self.param_groups = [dict(g, betas=tuple(g["betas"])) for g in state["param_groups"]]
        self.step.assign(float(state["step"]))
        for slots, values in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"])):
            for slot, value in zip(slots, values, strict=True):
                slot.assign(value.numpy())


def clip_by_total_norm(grads: Sequence[tf.Tensor], max_norm: float) -> list[tf.Tensor]:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, max_norm / (total 2-norm + 1e-6))."""
    total = tf.norm(tf.stack([tf.norm(g) for g in grads]))
    coefficient = tf.minimum(max_norm / (total + CLIP_EPS), 1.0)
    return [g * coefficient for g in grads]


class GumbelNoise:
    """The GDAS mixer's state: the temperature and a seeded generator of Gumbel noise (two draws per iteration,
    one per step, as the PyTorch supernet samples once per forward)."""

    def __init__(self, tau: float, seed: int) -> None:
        self.tau, self.seed = float(tau), int(seed)
        self.generator = tf.random.Generator.from_seed(self.seed)

    def state_dict(self) -> dict:
        return {"tau": self.tau, "seed": self.seed, "generator": torch.from_numpy(self.generator.state.numpy())}

    def load_state_dict(self, state: dict) -> None:
        self.tau, self.seed = float(state["tau"]), int(state["seed"])
        self.generator.reset(state["generator"].numpy())


def criterion_from_config(config: Any):
    """The config's criterion as a function (labels, logits) -> mean loss: `Softmax` (cross-entropy) or
    `SmoothSoftmax` (cross-entropy with label smoothing `label_smooth`), as `xautodl.optim.build_criterion`."""
    name = config.get("criterion") or "Softmax"
    if name == "Softmax":
        return lambda y, logits: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    if name == "SmoothSoftmax":
        smooth = float(config.get("label_smooth") or 0.1)

        def smoothed(y, logits):
            log_p = tf.nn.log_softmax(logits, axis=-1)
            nll = -tf.gather(log_p, y, axis=-1, batch_dims=1)
            return tf.reduce_mean((1 - smooth) * nll - smooth * tf.reduce_mean(log_p, axis=-1))
        return smoothed
    raise ConfigError(f"criterion {name!r} is not supported; expected 'Softmax' or 'SmoothSoftmax'")


def sgd_from_config(config: Any, variables: Sequence[tf.Variable]) -> TorchSGD:
    """SGD with the config's LR, momentum, weight decay (`decay`) and Nesterov flag, as `build_optimizer`."""
    name = config.get("optim") or "SGD"
    if name != "SGD":
        raise ConfigError(f"optimiser {name!r} is not supported; the configs of this tool use 'SGD'")
    momentum = config.get("momentum")
    return TorchSGD(variables, float(config.LR), momentum=0.9 if momentum is None else float(momentum),
                    weight_decay=float(config.get("decay") or 0.0), nesterov=bool(config.get("nesterov") or False))


class TFSearchModel:
    """The supernet as the search loop sees it (module docstring)."""

    def __init__(self, net: TFSupernet, mixer: GumbelNoise | None) -> None:
        self.net, self.mixer = net, mixer
        self.op_names = tuple(net.op_names)  # the order of every alpha row (the loop's log and TensorBoard tags)

    def weights(self) -> list[tf.Variable]:
        return list(self.net.weight_variables)

    def alphas(self) -> list[tf.Variable]:
        return [self.net.alpha_variable]

    def set_tau(self, tau: float) -> None:
        self.mixer.tau = float(tau)

    def train(self) -> TFSearchModel:
        return self  # the search runs BN in training mode throughout

    def genotype(self) -> Arch:
        """The highest-alpha op on every edge (`none` included), as the PyTorch supernet's genotype."""
        best = np.argmax(self.net.arch_parameters.numpy(), axis=-1)
        return Arch.from_edge_ops([self.net.op_names[k] for k in best])

    def alpha_table(self) -> dict[str, list[float]]:
        probs = F.softmax(torch.from_numpy(self.net.arch_parameters.numpy()), dim=-1).tolist()
        return {f"{node}<-{source}": row for (node, source), row in zip(edge_list(self.net.max_nodes), probs)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state)


class TFSearch(OptionalPhases):
    """GDAS (hard Gumbel sample, straight-through alpha gradient) or DARTS-V1 (softmax mixing, `mixer` None) on a
    `TFSupernet`: a weight step (SGD, gradient norm clipped) on the train batch, an architecture step (Adam) on the
    valid batch, each one `tf.function`. Steps take and return torch tensors (the loader's batches, NCHW; the loss
    and the logits for the loop's meter)."""

    def __init__(self, model: TFSearchModel, criterion, w_optimizer: TorchSGD, a_optimizer: TorchAdam,
                 grad_clip: float = 5.0, device: str = "/CPU:0") -> None:
        self.model, self.net, self.mixer = model, model.net, model.mixer
        self.criterion, self.w_optimizer, self.a_optimizer = criterion, w_optimizer, a_optimizer
        self.grad_clip, self.device = float(grad_clip), device
        self.dtype = self.net.alpha_variable.dtype
        self._traced: tuple | None = None

    def traced_steps(self, x: tf.Tensor) -> tuple:
        """The two steps as `tf.function`s (weight step, architecture step), each traced once: the signature leaves
        the batch size free (an epoch's last batch is smaller) and fixes the image size of the first batch."""
        if self._traced is None:
            scalar = tf.TensorSpec([], self.dtype)
            signature = [tf.TensorSpec([None, *x.shape[1:]], self.dtype), tf.TensorSpec([None], tf.int64), scalar,
                         scalar, tf.TensorSpec(self.net.alpha_variable.shape, self.dtype)]
            self._traced = tuple(tf.function(step, input_signature=signature, autograph=False)
                                 for step in (self.weight_step_tf, self.arch_step_tf))
        return self._traced

    def noise(self) -> tf.Tensor:
        """Gumbel noise for one forward from the mixer's generator (zeros, unused, for DARTS-V1)."""
        shape, dtype = self.net.alpha_variable.shape, self.dtype
        return tf.zeros(shape, dtype) if self.mixer is None else gumbel_noise(self.mixer.generator, shape, dtype)

    # ------------------------------------------------------------------------------------------ the steps
    def sample(self, noise: tf.Tensor, tau: tf.Tensor, alphas: tf.Tensor, route: bool):
        """The edge sample of one forward."""
        if self.mixer is None:
            return SoftmaxSample(alphas, self.net.op_names)
        return GumbelSample(alphas, tau, noise, route)

    def weight_step_tf(self, x: tf.Tensor, y: tf.Tensor, lr: tf.Tensor, tau: tf.Tensor,
                       noise: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One SGD step of the weights (NHWC batch); alphas held fixed. Returns loss and logits."""
        sample = self.sample(noise, tau, tf.stop_gradient(self.net.alpha_variable), route=False)
        weights = self.net.weight_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(weights)
            logits = self.net(x, sample=sample, training=True)
            loss = self.criterion(y, logits)
        grads = tape.gradient(loss, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        masks = self.net.weight_masks(sample.index) if self.mixer is not None else None
        if masks is not None:  # zero in value already; made explicit so the clipping norm cannot see them
            grads = [tf.where(m, g, tf.zeros_like(g)) for m, g in zip(masks, grads)]
        if self.grad_clip > 0:
            grads = clip_by_total_norm(grads, self.grad_clip)
        self.w_optimizer.apply(grads, lr, masks)
        return loss, logits

    def arch_step_tf(self, x: tf.Tensor, y: tf.Tensor, lr: tf.Tensor, tau: tf.Tensor,
                     noise: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One Adam step of the alphas on a (NHWC) valid batch. Returns loss and logits."""
        alphas = self.net.alpha_variable
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(alphas)
            sample = self.sample(noise, tau, tf.convert_to_tensor(alphas), route=True)
            logits = self.net(x, sample=sample, training=True)
            loss = self.criterion(y, logits)
        grad = tape.gradient(loss, alphas)
        self.a_optimizer.apply([grad], lr)
        return loss, logits

    # ------------------------------------------------------------------------------- the loop's interface
    def _inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.transpose(tf.constant(x.detach().cpu().numpy(), dtype=self.dtype), [0, 2, 3, 1])
        return x, tf.constant(y.detach().cpu().numpy().astype(np.int64))

    def _scalars(self, optimizer) -> tuple[tf.Tensor, tf.Tensor]:
        tau = 1.0 if self.mixer is None else self.mixer.tau
        return tf.constant(optimizer.param_groups[0]["lr"], self.dtype), tf.constant(tau, self.dtype)

    @staticmethod
    def _outputs(loss: tf.Tensor, logits: tf.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(float(loss.numpy())), torch.from_numpy(logits.numpy())

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with tf.device(self.device):
            x, y = self._inputs(x, y)
            step = self.traced_steps(x)[0]
            return self._outputs(*step(x, y, *self._scalars(self.w_optimizer), self.noise()))

    def arch_step(self, train, valid) -> tuple[torch.Tensor, torch.Tensor]:
        with tf.device(self.device):
            x, y = self._inputs(*valid)
            step = self.traced_steps(x)[1]
            return self._outputs(*step(x, y, *self._scalars(self.a_optimizer), self.noise()))
