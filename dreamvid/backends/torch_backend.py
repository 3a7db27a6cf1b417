"""PyTorch gradient step: autograd through the Keras model (Keras' torch backend), for the input only.

The model's parameters are frozen (``requires_grad=False``), so backward computes input gradients and never
weight gradients. Keras places the variables on the GPU when PyTorch sees one; tiles follow them there.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model import as_keras

name = "torch"


def has_gpu() -> bool:
    return torch.cuda.is_available()


def _device(model) -> torch.device:
    for v in model.variables:
        return v.value.device
    return torch.device("cpu")


def make_step(model, *, channels, matches: int = 0, precision: str = "fp32", jit: str | bool = "auto"):
    """Build the step function for ``model`` (outputs = the objective's layer terms, then ``matches`` match
    terms' layers). See ``backends.base``.

    ``jit`` is accepted for the contract; Keras layers do not trace cleanly under ``torch.compile``, so the
    step runs eagerly whatever it says.
    """
    model = as_keras(model)
    for v in model.variables:
        v.value.requires_grad_(False)
    device = _device(model)
    chans = [torch.as_tensor(c, dtype=torch.long, device=device) if c else None for c in channels]

    def run(tiles: np.ndarray, weights: np.ndarray, targets=()):
        if len(targets) != matches:
            raise ValueError(f"this step has {matches} match terms, got {len(targets)} targets")
        x = torch.as_tensor(np.ascontiguousarray(tiles, np.float32), device=device).requires_grad_(True)
        w = torch.as_tensor(np.asarray(weights, np.float32), device=device)
        ts = [torch.as_tensor(np.asarray(t, np.float32), device=device) for t in targets]
        with torch.enable_grad():
            acts = model(x, training=False)
            if not isinstance(acts, (list, tuple)):
                acts = [acts]
            losses = 0.0
            for i, act in enumerate(acts):
                act = act.float()
                if i >= len(chans):  # a match term: mean_p max_k <act[p], target[k]>
                    scores = torch.einsum("bpc,kc->bpk", act.reshape(act.shape[0], -1, act.shape[-1]),
                                          ts[i - len(chans)])
                    losses = losses + w[i] * scores.max(dim=-1).values.mean(dim=1)
                    continue
                if chans[i] is not None:
                    act = act.index_select(-1, chans[i])
                losses = losses + w[i] * act.mean(dim=(1, 2, 3))
            (g,) = torch.autograd.grad(losses.sum(), x)
        return g.detach().float().cpu().numpy(), losses.detach().float().cpu().numpy()

    return run


def make_forward(model, *, precision: str = "fp32", jit: str | bool = "auto"):
    """``forward(tiles (B, H, W, 3)) -> [float32 activation (B, h, w, C) per output of model]``."""
    model = as_keras(model)
    device = _device(model)

    def forward(tiles: np.ndarray):
        with torch.no_grad():
            acts = model(torch.as_tensor(np.ascontiguousarray(tiles, np.float32), device=device), training=False)
        acts = acts if isinstance(acts, (list, tuple)) else [acts]
        return [a.detach().float().cpu().numpy() for a in acts]

    return forward
