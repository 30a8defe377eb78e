"""Loss terms of the mask VAE family against values computed by hand on tiny batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from echolatent.models.losses import (LossConfig, attribute_loss, compute_losses, kl_divergence,
                                      phase_loss, reconstruction_loss, soft_dice_per_class)

LN3 = math.log(3.0)


def two_class_case():
    """One 2x2 map, classes {0, 1}, target [[0, 1], [1, 1]].

    Logits (c0, c1) per pixel give p1 = 1/2, 3/4, 3/4, 1/4, so by hand:
    CE = (ln 2 + ln 4/3 + ln 4/3 + ln 4) / 4;
    sum p1 t1 = 7/4, sum p1 = 9/4, sum t1 = 3 -> Dice_1 = (7/2 + s) / (21/4 + s).
    """
    logits = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    logits[0, 1, 0, 1] = LN3
    logits[0, 1, 1, 0] = LN3
    logits[0, 0, 1, 1] = LN3
    target = torch.tensor([[[0, 1], [1, 1]]])
    ce = (math.log(2) + 2 * math.log(4 / 3) + math.log(4)) / 4
    return logits, target, ce


def test_reconstruction_two_classes_hand_computed():
    logits, target, ce = two_class_case()
    out = reconstruction_loss(logits, target, ce_weight=0.1, dice_weight=1.0, smooth=0.0)
    assert out["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert out["dice_loss"].item() == pytest.approx(1 - 2 / 3, abs=1e-6)  # (7/2) / (21/4)
    assert out["rec"].item() == pytest.approx(0.1 * ce + 1 / 3, abs=1e-6)
    # Laplace smoothing s = 1: (7/2 + 1) / (21/4 + 1) = 0.72
    out1 = reconstruction_loss(logits, target, smooth=1.0)
    assert out1["dice_loss"].item() == pytest.approx(1 - 0.72, abs=1e-6)
    assert out1["rec"].item() == pytest.approx(0.1 * ce + 0.28, abs=1e-6)


def test_reconstruction_excludes_background_and_averages_foreground():
    # Uniform logits over 3 classes: p = 1/3 everywhere, target [[0, 1], [2, 2]].
    logits = torch.zeros(1, 3, 2, 2)
    target = torch.tensor([[[0, 1], [2, 2]]])
    out = reconstruction_loss(logits, target, ce_weight=0.1, smooth=0.0)
    # Dice_1 = (2/3) / (4/3 + 1) = 2/7 ; Dice_2 = (4/3) / (4/3 + 2) = 2/5 ; background not used
    assert out["ce"].item() == pytest.approx(LN3, abs=1e-6)
    assert out["dice_loss"].item() == pytest.approx(1 - (2 / 7 + 2 / 5) / 2, abs=1e-6)
    per_class = soft_dice_per_class(torch.full((1, 3, 2, 2), 1 / 3),
                                    torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2)
                                    .float(), smooth=0.0)
    assert per_class.tolist() == pytest.approx([2 / 7, 2 / 7, 2 / 5], abs=1e-6)


def test_reconstruction_perfect_prediction_is_zero():
    target = torch.tensor([[[0, 1], [2, 3]], [[3, 2], [1, 0]]])
    logits = 50.0 * torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    out = reconstruction_loss(logits, target)
    assert out["rec"].item() == pytest.approx(0.0, abs=1e-6)


def test_kl_hand_computed():
    # sample 1: dim0 0.5 (1 + 1 - 1 - 0) = 0.5, dim1 0.5 (2 - 1 - ln 2) -> 1 - ln2 / 2
    # sample 2: dim0 0, dim1 0.5 (1 + 4 - 1) = 2 ; batch mean = 1.5 - ln 2 / 4
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    assert kl_divergence(mu, logvar).item() == pytest.approx(1.5 - math.log(2) / 4, abs=1e-6)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_attribute_loss_hand_computed_two_samples():
    # attr 0 agrees with the code order, attr 1 is reversed; delta = 1.
    # pair (0,1) and (1,0): |tanh(-+1) - sign(-+2)| = 1 - tanh 1 for attr 0, 1 + tanh 1 for attr 1;
    # the diagonal gives 0; mean over the 4 pairs -> (1 - tanh 1) / 2 and (1 + tanh 1) / 2.
    z = torch.tensor([[0.0, 0.0, 9.0], [1.0, 1.0, -9.0]])
    a = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    t1 = math.tanh(1.0)
    only0 = attribute_loss(z, a[:, :1], delta=1.0).item()
    assert only0 == pytest.approx((1 - t1) / 2, abs=1e-6)
    both = attribute_loss(z, a, delta=1.0).item()
    assert both == pytest.approx((1 - t1) / 2 + (1 + t1) / 2, abs=1e-6)


def test_attribute_loss_limits():
    b = 8
    z = torch.linspace(-3, 3, b)[:, None].repeat(1, 4)
    attrs = torch.arange(b, dtype=torch.float32)[:, None]
    # ordered, well separated codes (delta * gap = 16 * 6/7): tanh ~ 1 -> loss ~ 0
    assert attribute_loss(z, attrs, delta=16.0).item() < 1e-5
    # reversed order: 2 for every ordered pair i != j, 0 on the diagonal
    maximum = 2 * (b * b - b) / (b * b)
    assert attribute_loss(z, -attrs, delta=16.0).item() == pytest.approx(maximum, abs=1e-5)
    # two attributes -> sum of the two per-attribute means
    two = torch.cat([attrs, -attrs], 1)
    assert attribute_loss(z, two, delta=16.0).item() == pytest.approx(maximum, abs=1e-5)


def test_attribute_loss_ties_and_missing_values():
    z = torch.tensor([[0.0], [0.5]])
    # equal attributes: sign 0, the pair cost is |tanh(delta dz)|
    tie = attribute_loss(z, torch.tensor([[2.0], [2.0]]), delta=2.0).item()
    assert tie == pytest.approx(2 * math.tanh(1.0) / 4, abs=1e-6)
    # a NaN attribute removes its pairs; with only the diagonal left the loss is 0
    z3 = torch.tensor([[0.0], [1.0], [2.0]])
    a3 = torch.tensor([[0.0], [float("nan")], [1.0]])
    value = attribute_loss(z3, a3, delta=1.0).item()
    # valid pairs: (0,0), (2,2), (0,2), (2,0): 2 * (1 - tanh 2) / 4
    assert value == pytest.approx((1 - math.tanh(2.0)) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="latent"):
        attribute_loss(torch.zeros(2, 1), torch.zeros(2, 2))


def test_phase_loss_hand_computed():
    assert phase_loss(torch.tensor([0.5, 0.0]), torch.tensor([0.0, 1.0])).item() == \
        pytest.approx(0.625)


def fake_output(with_phase=False):
    logits, target, ce = two_class_case()
    out = {"logits": logits.float(), "mu": torch.tensor([[1.0, 0.0]]),
           "logvar": torch.tensor([[0.0, math.log(2.0)]]), "z": torch.tensor([[0.3, 0.7]])}
    if with_phase:
        out["phase"] = torch.tensor([0.25])
    return out, target, ce


@pytest.mark.parametrize("kind", ["vae", "beta-vae", "ar-vae", "cvae"])
def test_compute_losses_kinds_are_config_changes(kind):
    out, target, ce = fake_output(with_phase=True)
    # batch of one: the AR term only has the diagonal pair -> 0; use a 2-sample AR check below
    cfg = LossConfig(kind=kind, beta=0.5, gamma=0.1, delta=16, phase_weight=2.0, dice_smooth=0.0)
    terms = compute_losses(out, target, cfg, attrs=torch.tensor([[1.0]]),
                           frame_pos=torch.tensor([0.75]))
    kl = 1 - math.log(2) / 2
    rec = 0.1 * ce + 1 / 3
    assert terms["kl"].item() == pytest.approx(kl, abs=1e-6)
    assert terms["phase"].item() == pytest.approx(0.25, abs=1e-6)
    expected = rec + 0.5 * kl + (2.0 * 0.25 if kind == "cvae" else 0.0)
    assert terms["total"].item() == pytest.approx(expected, abs=1e-6)


def test_compute_losses_ar_weight_and_requirements():
    logits = torch.zeros(2, 2, 2, 2)
    target = torch.zeros(2, 2, 2, dtype=torch.long)
    out = {"logits": logits, "mu": torch.zeros(2, 2), "logvar": torch.zeros(2, 2),
           "z": torch.tensor([[0.0, 0.0], [1.0, 0.0]])}
    attrs = torch.tensor([[3.0], [1.0]])  # reversed: per-pair 1 + tanh(delta)
    cfg = LossConfig(kind="ar-vae", gamma=0.1, delta=1.0)
    terms = compute_losses(out, target, cfg, attrs=attrs)
    attr = (1 + math.tanh(1.0)) / 2
    assert terms["attr"].item() == pytest.approx(attr, abs=1e-6)
    assert terms["total"].item() == pytest.approx(terms["rec"].item() + 0.1 * attr, abs=1e-6)
    plain = compute_losses(out, target, LossConfig(kind="vae"), attrs=attrs)
    assert plain["total"].item() == pytest.approx(plain["rec"].item(), abs=1e-6)
    assert math.isnan(plain["phase"].item())
    with pytest.raises(ValueError, match="attributes"):
        compute_losses(out, target, cfg)
    with pytest.raises(ValueError, match="phase"):
        compute_losses(out, target, LossConfig(kind="cvae"), frame_pos=torch.zeros(2))


def test_loss_config_validation():
    assert LossConfig().beta == 1e-4 and LossConfig().gamma == 0.1 and LossConfig().delta == 16
    with pytest.raises(ValueError, match="kind"):
        LossConfig(kind="gan")
    with pytest.raises(ValueError, match="unknown key"):
        LossConfig.from_dict({"kind": "vae", "betta": 1.0})
    with pytest.raises(ValueError, match="beta"):
        LossConfig(beta=-1)
    assert LossConfig.from_dict({"beta": "5e-4"}).beta == 5e-4  # YAML 1.1 reads 5e-4 as a str
    with pytest.raises(ValueError, match="gamma"):
        LossConfig(gamma="much")
    cfg = LossConfig.from_dict({"kind": "beta-vae", "beta": 4})
    assert cfg.beta == 4.0 and isinstance(cfg.beta, float)
    assert LossConfig.from_dict(cfg.to_dict()) == cfg


def test_kl_capacity_value_and_gradient_sign_on_each_side_of_c():
    """beta |KL - C| (latent_models.md §2): value and gradient by hand, below and above C.

    mu = [1, 0], logvar = [0, ln 2] (batch of one), per dimension -1/2 (1 + logvar - mu^2 - var):
    dim 0: -1/2 (1 + 0 - 1 - 1) = 1/2 ; dim 1: -1/2 (1 + ln 2 - 0 - 2) = (1 - ln 2) / 2
    -> KL = 1 - ln 2 / 2 ~ 0.6534. dKL/dmu_0 = mu_0 = 1; dKL/dlogvar_1 = (exp(ln 2) - 1) / 2 = 1/2.
    Above C (KL > C) the term pulls KL down: gradient +beta dKL; below C it pushes KL up:
    gradient -beta dKL.
    """
    logits, target, ce = two_class_case()
    kl = 1 - math.log(2) / 2
    rec = 0.1 * ce + 1 / 3
    beta = 0.5
    for capacity, side in ((0.25, +1.0), (2.0, -1.0)):
        mu = torch.tensor([[1.0, 0.0]], requires_grad=True)
        logvar = torch.tensor([[0.0, math.log(2.0)]], requires_grad=True)
        out = {"logits": logits.float(), "mu": mu, "logvar": logvar, "z": mu.detach()}
        cfg = LossConfig(kind="vae", beta=beta, capacity=capacity, dice_smooth=0.0)
        terms = compute_losses(out, target, cfg)
        assert terms["kl"].item() == pytest.approx(kl, abs=1e-6)
        assert terms["total"].item() == pytest.approx(rec + beta * abs(kl - capacity), abs=1e-6)
        terms["total"].backward()
        assert mu.grad.tolist()[0] == pytest.approx([side * beta * 1.0, 0.0], abs=1e-6)
        assert logvar.grad.tolist()[0] == pytest.approx([0.0, side * beta * 0.5], abs=1e-6)
    # C = 0 is the plain beta KL
    plain = compute_losses({"logits": logits.float(), "mu": torch.tensor([[1.0, 0.0]]),
                            "logvar": torch.tensor([[0.0, math.log(2.0)]]), "z": torch.zeros(1, 2)},
                           target, LossConfig(kind="vae", beta=beta, capacity=0.0, dice_smooth=0.0))
    assert plain["total"].item() == pytest.approx(rec + beta * kl, abs=1e-6)


def test_kl_closed_form_in_sigma():
    """KL(N(mu, s^2) || N(0, 1)) = -ln s + (s^2 + mu^2 - 1) / 2 per dimension, summed."""
    mu = torch.tensor([[1.5, -0.5, 0.0]])
    sigma = torch.tensor([[0.5, 2.0, 1.0]])
    expected = sum(-math.log(s) + (s * s + m * m - 1) / 2 for m, s in zip([1.5, -0.5, 0.0], [0.5, 2.0, 1.0]))
    assert kl_divergence(mu, 2 * torch.log(sigma)).item() == pytest.approx(expected, abs=1e-6)


def test_gradients_match_closed_forms():
    """Cross-entropy, KL and AR-term gradients against their derivatives written by hand."""
    # CE over N pixels: dCE/dlogits = (softmax - onehot) / N. Two-class case: p1 = 1/2, 3/4, 3/4, 1/4.
    logits, target, _ = two_class_case()
    logits = logits.float().requires_grad_(True)
    reconstruction_loss(logits, target, ce_weight=1.0, dice_weight=0.0)["rec"].backward()
    grad1 = np.array([[0.5 - 0, 0.75 - 1], [0.75 - 1, 0.25 - 1]]) / 4
    np.testing.assert_allclose(logits.grad[0, 1].numpy(), grad1, atol=1e-6)
    np.testing.assert_allclose(logits.grad[0, 0].numpy(), -grad1, atol=1e-6)
    # KL, batch of B = 2: dKL/dmu = mu / B, dKL/dlogvar = (exp(logvar) - 1) / (2 B)
    mu = torch.tensor([[1.0, -2.0], [0.5, 0.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(3.0)], [math.log(0.5), 0.0]], requires_grad=True)
    kl_divergence(mu, logvar).backward()
    np.testing.assert_allclose(mu.grad.numpy(), [[0.5, -1.0], [0.25, 0.0]], atol=1e-6)
    np.testing.assert_allclose(logvar.grad.numpy(), [[0.0, 0.5], [-0.125, 0.0]], atol=1e-6)
    # AR term, two samples in the attribute's order (a_0 < a_1), d = z_1 - z_0 = 1, delta = 1:
    # L = 2 (1 - tanh(delta d)) / 4 -> dL/dz_1 = -delta sech^2(delta d) / 2 = -dL/dz_0:
    # the gradient step moves z_1 up and z_0 down, i.e. spreads the codes in the attribute's order.
    z = torch.tensor([[0.0, 5.0], [1.0, -5.0]], requires_grad=True)
    attribute_loss(z, torch.tensor([[1.0], [3.0]]), delta=1.0).backward()
    sech2 = 1 / math.cosh(1.0) ** 2
    np.testing.assert_allclose(z.grad.numpy(), [[sech2 / 2, 0.0], [-sech2 / 2, 0.0]], atol=1e-6)
