"""Loss terms of the mask VAE family (pure functions on tensors).

Terms (reference note ``latent_models.md`` §1-3):

* reconstruction = ``ce_weight`` x cross-entropy + ``dice_weight`` x (1 - mean soft Dice
  over the foreground classes);
* KL = batch mean of -1/2 sum_k (1 + logvar_k - mu_k^2 - exp(logvar_k));
* AR-VAE attribute term, for attribute l tied to latent dimension l:
  mean over all B^2 ordered pairs (i, j), diagonal included, of
  ``|tanh(delta (z_i[l] - z_j[l])) - sign(a_i[l] - a_j[l])|``, summed over attributes;
* phase term = MSE(head(mu), frame_pos).

:class:`LossConfig` selects the terms from ``kind``:

=========  =====================================================================
kind       total loss
=========  =====================================================================
vae        rec + beta |KL - C|            (beta small, e.g. the default 1e-4)
beta-vae   rec + beta |KL - C|            (the config sets a larger beta)
ar-vae     rec + beta |KL - C| + gamma sum_l L_l
cvae       rec + beta |KL - C| + phase_weight MSE(head(mu), frame_pos)
=========  =====================================================================

``vae`` and ``beta-vae`` share the same formula: they differ only by the ``beta`` the
configuration gives, so that each model kind is a configuration change.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from .config import KINDS, LossConfig

__all__ = [
    "KINDS",
    "LossConfig",
    "soft_dice_per_class",
    "reconstruction_loss",
    "kl_divergence",
    "attribute_loss",
    "phase_loss",
    "compute_losses",
]

def soft_dice_per_class(probs: torch.Tensor, target_onehot: torch.Tensor,
                        smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice per class, pooled over the batch and the pixels.

    ``probs`` and ``target_onehot`` are (B, C, H, W). Returns (C,) with
    ``(2 sum(p t) + smooth) / (sum p + sum t + smooth)``. Pooling over the batch keeps the
    score defined when a structure is absent from some frames.
    """
    dims = (0, 2, 3)
    inter = (probs * target_onehot).sum(dims)
    denom = probs.sum(dims) + target_onehot.sum(dims)
    return (2.0 * inter + smooth) / (denom + smooth)


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, ce_weight: float = 0.1,
                        dice_weight: float = 1.0, smooth: float = 1.0
                        ) -> dict[str, torch.Tensor]:
    """``ce_weight`` x CE + ``dice_weight`` x (1 - mean foreground soft Dice).

    ``logits``: (B, C, H, W); ``target``: integer labels (B, H, W). Computed in float32.
    Returns ``{"rec", "ce", "dice_loss"}`` (``dice_loss`` = 1 - mean soft Dice).
    """
    logits = logits.float()
    target = target.long()
    ce = F.cross_entropy(logits, target)
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    dice = soft_dice_per_class(probs, onehot, smooth)[1:].mean()
    dice_loss = 1.0 - dice
    return {"rec": ce_weight * ce + dice_weight * dice_loss, "ce": ce, "dice_loss": dice_loss}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch mean of -1/2 sum_k (1 + logvar - mu^2 - exp(logvar)), KL to N(0, I)."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def attribute_loss(z: torch.Tensor, attrs: torch.Tensor, delta: float = 16.0) -> torch.Tensor:
    """AR-VAE regulariser, unweighted: sum over attributes l of the mean over all pairs.

    ``z``: sampled codes (B, D); ``attrs``: (B, K) with K <= D; attribute l is tied to
    latent dimension l. For each l the term is the mean over the B^2 ordered pairs
    (diagonal included, where it is 0) of ``|tanh(delta dz_ij) - sign(da_ij)|``.
    Pairs where either attribute is NaN (structure missing) are left out of that mean.
    The maximum per attribute with distinct values is 2 (B^2 - B) / B^2.
    """
    z = z.float()
    attrs = attrs.to(device=z.device, dtype=torch.float32)
    k = attrs.shape[1]
    if k > z.shape[1]:
        raise ValueError(f"{k} attributes but only {z.shape[1]} latent dimensions")
    zk = z[:, :k]
    dz = zk.unsqueeze(1) - zk.unsqueeze(0)          # (B, B, K): z_i - z_j
    da = attrs.unsqueeze(1) - attrs.unsqueeze(0)    # (B, B, K): a_i - a_j
    valid = ~torch.isnan(da)
    err = (torch.tanh(delta * dz) - torch.sign(torch.nan_to_num(da))).abs()
    err = torch.where(valid, err, torch.zeros_like(err))
    per_attr = err.sum(dim=(0, 1)) / valid.sum(dim=(0, 1)).clamp_min(1)
    return per_attr.sum()


def phase_loss(phase_pred: torch.Tensor, frame_pos: torch.Tensor) -> torch.Tensor:
    """MSE between the phase head output (B,) and the frame position in [0, 1] (B,)."""
    return F.mse_loss(phase_pred.float().reshape(-1),
                      frame_pos.to(phase_pred.device, torch.float32).reshape(-1))


def compute_losses(out: Mapping[str, torch.Tensor], target: torch.Tensor, cfg: LossConfig,
                   attrs: torch.Tensor | None = None, frame_pos: torch.Tensor | None = None
                   ) -> dict[str, torch.Tensor]:
    """All terms for one batch, plus ``total`` (the one to back-propagate).

    ``out`` is the model's output dict (``logits``, ``mu``, ``logvar``, ``z`` and optionally
    ``phase``). The attribute term is computed whenever ``attrs`` is given and the phase
    term whenever the model has a phase head and ``frame_pos`` is given, for monitoring;
    they enter ``total`` only for the kinds that use them. Terms that cannot be computed
    are NaN.
    """
    terms = reconstruction_loss(out["logits"], target, cfg.ce_weight, cfg.dice_weight,
                                cfg.dice_smooth)
    kl = kl_divergence(out["mu"], out["logvar"])
    nan = torch.full((), float("nan"), device=kl.device)
    terms["kl"] = kl
    terms["attr"] = attribute_loss(out["z"], attrs, cfg.delta) if attrs is not None else nan
    has_phase = "phase" in out and frame_pos is not None
    terms["phase"] = phase_loss(out["phase"], frame_pos) if has_phase else nan

    total = terms["rec"] + cfg.beta * (kl - cfg.capacity).abs()
    if cfg.uses_attributes:
        if attrs is None:
            raise ValueError("kind 'ar-vae' needs attributes")
        total = total + cfg.gamma * terms["attr"]
    if cfg.uses_phase:
        if not has_phase:
            raise ValueError("kind 'cvae' needs a model with a phase head and frame positions")
        total = total + cfg.phase_weight * terms["phase"]
    terms["total"] = total
    return terms
