"""The KL autoencoder, its objective (L1 + SSIM + KL, optional PatchGAN with the adaptive weight)."""
from __future__ import annotations

import pytest
import torch

from unnoise.data.landscapes import render_landscapes
from unnoise.nn.autoencoder import KLAutoencoder, PatchDiscriminator, kl_divergence
from unnoise.objectives.autoencoder import AutoencoderObjective, adaptive_weight

EPS32 = torch.finfo(torch.float32).eps


@pytest.mark.parametrize("factor", [4, 8])
def test_shapes_per_factor(factor):
    model = KLAutoencoder(factor=factor, channels=8, latent_channels=3)
    x = torch.zeros(2, 3, 32, 32)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (2, 3, 32 // factor, 32 // factor)
    assert model.decode(mean).shape == x.shape and model.latent_shape((3, 32, 32)) == (3, 32 // factor, 32 // factor)
    with pytest.raises(ValueError):
        KLAutoencoder(factor=2)


def test_kl_matches_its_closed_form():
    mean, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.0, 0.4]])
    expected = 0.5 * (0.25 + 1 - 1 - 0) + 0.5 * (1.0 + torch.exp(torch.tensor(0.4)) - 1 - 0.4)
    assert abs(float(kl_divergence(mean, logvar)[0]) - float(expected)) < 10 * EPS32
    assert float(kl_divergence(torch.zeros(1, 4), torch.zeros(1, 4))[0]) == 0.0


def test_autoencoder_overfits_a_tiny_batch():
    torch.manual_seed(0)
    x = render_landscapes(range(4), size=32)["images"]
    model = KLAutoencoder(factor=4, channels=8)
    objective = AutoencoderObjective(model)
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(15):
        loss = objective.loss({"x": x}, generator)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
        objective.observe({}, loss.detach())
        losses.append(float(loss.detach().mean()))
    assert losses[-1] < 0.75 * losses[0] and losses[-1] < min(losses[:5]), losses[::3]
    assert objective.step == 15 and objective.state()["step"].item() == 15


def test_gan_term_uses_the_adaptive_weight_and_trains_the_discriminator():
    torch.manual_seed(1)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    model = KLAutoencoder(factor=4, channels=8)
    objective = AutoencoderObjective(model, gan_start=1, discriminator=PatchDiscriminator(channels=8))
    generator = torch.Generator().manual_seed(0)
    objective.observe({}, objective.loss({"x": x}, generator).detach())  # step 0: no GAN yet
    assert "adaptive_weight" not in objective.last_terms
    before = [p.detach().clone() for p in objective.discriminator.parameters()]
    loss = objective.loss({"x": x}, generator)
    assert torch.isfinite(loss).all() and objective.last_terms["adaptive_weight"] > 0
    loss.mean().backward()
    objective.observe({}, loss.detach())
    after = list(objective.discriminator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    state = objective.state()
    fresh = AutoencoderObjective(model, gan_start=1, discriminator=PatchDiscriminator(channels=8))
    fresh.load_state(state)
    assert fresh.step == 2 and all(torch.equal(a, b) for a, b in zip(fresh.discriminator.parameters(), after))


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    weight = torch.tensor([1.0, 2.0], requires_grad=True)
    reconstruction, gan = (3.0 * weight).sum(), (weight**2).sum()  # gradients (3, 3) and (2, 4)
    expected = (18**0.5) / (20**0.5 + 1e-4)
    assert abs(float(adaptive_weight(reconstruction, gan, weight)) - expected) < 10 * EPS32
