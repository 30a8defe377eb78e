"""Mask VAE architecture, encoding helpers and device resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echolatent.models import REFERENCE_VAE, MaskVAE, VAEConfig, dice_per_class, one_hot, resolve_device
from echolatent.models.inference import encode


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("cfg", [
    dict(n_classes=4, input_size=32, blocks=2, init_channels=4, latent_dim=3, bottleneck_channels=4),
    dict(n_classes=3, input_size=64, blocks=3, init_channels=8, latent_dim=16,
         bottleneck_channels=16, phase_head=True),
    dict(n_classes=4, input_size=128, blocks=4, init_channels=8, latent_dim=8,
         bottleneck_channels=16),
    dict(n_classes=2, input_size=16, blocks=1, init_channels=2, latent_dim=1, bottleneck_channels=1),
])
def test_forward_shapes_and_dtypes(cfg):
    model = MaskVAE(VAEConfig(**cfg))
    b, s, c, d = 3, cfg["input_size"], cfg["n_classes"], cfg["latent_dim"]
    labels = torch.randint(0, c, (b, s, s), generator=torch.Generator().manual_seed(0))
    out = model(one_hot(labels, c))
    assert out["logits"].shape == (b, c, s, s) and out["logits"].dtype == torch.float32
    for key in ("mu", "logvar", "z"):
        assert out[key].shape == (b, d) and out[key].dtype == torch.float32
    if cfg.get("phase_head"):
        assert out["phase"].shape == (b,)
        assert isinstance(model.phase_head, torch.nn.Linear)
        assert (model.phase_head.in_features, model.phase_head.out_features) == (d, 1)
    else:
        assert "phase" not in out and model.phase_head is None
        with pytest.raises(RuntimeError, match="phase head"):
            model.phase(out["mu"])
    # deterministic path: z = mu
    model.eval()
    out2 = model(one_hot(labels, c), sample=False)
    assert torch.equal(out2["z"], out2["mu"])


def test_reference_configuration_layout():
    cfg = VAEConfig(**REFERENCE_VAE)
    assert cfg.bottleneck_size == 8 and cfg.channels == [48, 96, 192, 384]
    model = MaskVAE(cfg)
    assert model.fc_mu.in_features == 3072 and model.fc_mu.out_features == 16
    assert model.fc_logvar.in_features == 3072
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [m.stride[0] for m in convs] == [2, 1] * 4 + [2]
    assert all(m.kernel_size == (3, 3) for m in convs)
    assert convs[-1].out_channels == 48
    tconvs = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in tconvs] == [384, 192, 96, 48, 48]
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in tconvs)
    # conv -> ELU -> BatchNorm ordering
    assert isinstance(model.encoder[1], torch.nn.ELU)
    assert isinstance(model.encoder[2], torch.nn.BatchNorm2d)
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, 256, 256))
    assert out["logits"].shape == (1, 3, 256, 256)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        VAEConfig(input_size=40, blocks=3)
    with pytest.raises(ValueError, match="unknown key"):
        VAEConfig.from_dict({"input_size": 64, "latent": 8})
    with pytest.raises(ValueError, match="latent_dim"):
        VAEConfig(latent_dim=0)
    cfg = VAEConfig(input_size=32, blocks=2)
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert MaskVAE(cfg.to_dict()).config == cfg


def test_sampling_uses_the_generator():
    model = MaskVAE(VAEConfig(input_size=32, blocks=2, init_channels=4, bottleneck_channels=4))
    x = one_hot(torch.zeros(2, 32, 32, dtype=torch.long), 4)
    model.eval()
    out = model(x, generator=torch.Generator().manual_seed(5))
    z2 = model(x, generator=torch.Generator().manual_seed(5))["z"]
    z3 = model(x, generator=torch.Generator().manual_seed(6))["z"]
    assert torch.equal(out["z"], z2) and not torch.equal(out["z"], z3)
    # the reparameterisation z = mu + sigma * eps, sigma = exp(logvar / 2), eps ~ N(0, I) the
    # generator's first draw
    eps = torch.randn(out["mu"].shape, generator=torch.Generator().manual_seed(5))
    expected = out["mu"] + torch.exp(0.5 * out["logvar"]) * eps
    torch.testing.assert_close(out["z"], expected, rtol=0, atol=1e-6)


def test_reparameterised_codes_have_the_posterior_moments():
    """z ~ N(mu, exp(logvar)): over 200 000 draws the mean is mu and the sd exp(logvar / 2)."""
    from echolatent.models.vae import reparameterize

    mu = torch.tensor([[1.5, -2.0, 0.0]]).expand(200_000, 3)
    logvar = torch.log(torch.tensor([[0.25, 4.0, 1.0]])).expand(200_000, 3)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    # standard error of the mean sd / sqrt(n) <= 2 / 447 ~ 0.0045: 5 standard errors
    torch.testing.assert_close(z.mean(0), torch.tensor([1.5, -2.0, 0.0]), rtol=0, atol=0.025)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0, 1.0]), rtol=0.01, atol=0)


def test_one_hot_and_label_check():
    oh = one_hot(np.array([[[0, 2], [1, 0]]], np.uint8), 3)
    assert oh.shape == (1, 3, 2, 2) and oh.dtype == torch.float32
    assert oh[0, :, 0, 1].tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="labels"):
        one_hot(np.array([[[0, 3]]]), 3)
    with pytest.raises(TypeError):
        one_hot(np.zeros((1, 2, 2), np.float32), 3)


def test_dice_per_class_hand_computed():
    pred = np.array([[[1, 1], [0, 2]]])
    target = np.array([[[1, 0], [0, 2]]])
    d = dice_per_class(pred, target, 4)
    # BG: P={(1,0)}, T={(0,1),(1,0)} -> 2/3 ; LV: P 2 px, T 1 px, overlap 1 -> 2/3 ; MYO: 1
    assert d[0, :3].tolist() == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert np.isnan(d[0, 3])  # LA absent from both


def test_dice_of_overlapping_squares_hand_built():
    """Two 10 x 10 squares offset by 5 columns overlap on 10 x 5 = 50 px: Dice = 2 * 50 / (100 + 100) = 0.5."""
    pred = np.zeros((2, 30, 30), np.uint8)
    target = np.zeros((2, 30, 30), np.uint8)
    pred[0, 5:15, 5:15] = 1
    target[0, 5:15, 10:20] = 1
    # frame 2: an LV of 8 x 8 = 64 px inside a target of 8 x 12 = 96 px, plus an MYO square
    # of 16 px predicted where the target has none: LV 2 * 64 / 160 = 0.8, MYO 0
    pred[1, 4:12, 4:12] = 1
    target[1, 4:12, 4:16] = 1
    pred[1, 20:24, 20:24] = 2
    d = dice_per_class(pred, target, 3)
    assert d[0, 1] == pytest.approx(0.5)
    assert np.isnan(d[0, 2])
    # background: pred 900 - 100 = 800, target 800, overlap 900 - |union| = 900 - 150 = 750
    assert d[0, 0] == pytest.approx(2 * 750 / 1600)
    assert d[1, 1] == pytest.approx(0.8) and d[1, 2] == 0.0


def test_encode_shapes_and_mode_restored():
    cfg = VAEConfig(input_size=32, blocks=2, init_channels=4, latent_dim=5, bottleneck_channels=4)
    model = MaskVAE(cfg)
    model.train()
    masks = np.random.default_rng(0).integers(0, 4, (7, 32, 32)).astype(np.uint8)
    mu, logvar, rec = encode(model, masks, batch_size=3)
    assert mu.shape == (7, 5) and logvar.shape == (7, 5) and mu.dtype == np.float32
    assert rec.shape == (7, 32, 32) and rec.dtype == np.uint8 and rec.max() < 4
    assert model.training
    # batch size does not change the eval-mode encoding
    mu_all, _, rec_all = encode(model, masks, batch_size=100)
    np.testing.assert_allclose(mu, mu_all, atol=1e-5)
    # the encoding is the eval-mode posterior mean, and the reconstruction the argmax of decode(mu)
    model.eval()
    with torch.no_grad():
        mu_ref, logvar_ref = model.encode(one_hot(masks, 4))
        rec_ref = model.decode(mu_ref).argmax(1).numpy()
    np.testing.assert_allclose(mu, mu_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(logvar, logvar_ref.numpy(), atol=1e-5)
    np.testing.assert_array_equal(rec, rec_ref)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_fallback_without_cuda(log_lines):
    assert resolve_device("auto") == torch.device("cpu")
    assert "falling back to CPU" in log_lines[0]
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_auto_with_cuda():
    assert resolve_device("auto").type == "cuda"
