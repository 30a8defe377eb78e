"""Latent models of cardiac label maps: mask VAE, losses, training and encoding."""

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
