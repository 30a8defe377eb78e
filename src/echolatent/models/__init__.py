"""Latent models of cardiac label maps: mask VAE, losses, training and encoding.

Importing this package before torch sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is
already set: torch's OpenMP threads then sleep instead of spinning at barriers. On a small,
shared CPU machine (2 cores with other jobs running) spinning threads made training up to
10x slower; on an idle machine the difference is small. Set the variable yourself (e.g.
``OMP_WAIT_POLICY=ACTIVE``) to override; it has no effect once torch is imported.
"""

import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .encode import dice_per_class, encode, one_hot
from .losses import (KINDS, LossConfig, attribute_loss, compute_losses, kl_divergence,
                     phase_loss, reconstruction_loss, soft_dice_per_class)
from .training import (ATTRIBUTE_NAMES, CheckpointMismatchError, TrainConfig,
                       TrainingInterrupted, load_checkpoint, load_model, resolve_device,
                       train_vae)
from .vae import REFERENCE_VAE, MaskVAE, VAEConfig

__all__ = [
    "ATTRIBUTE_NAMES", "KINDS", "REFERENCE_VAE",
    "MaskVAE", "VAEConfig", "LossConfig", "TrainConfig",
    "TrainingInterrupted", "CheckpointMismatchError",
    "reconstruction_loss", "soft_dice_per_class", "kl_divergence", "attribute_loss",
    "phase_loss", "compute_losses",
    "train_vae", "load_checkpoint", "load_model", "resolve_device",
    "encode", "one_hot", "dice_per_class",
]
