"""The autoencoder objective (Rombach et al. 2022, Sec. 3.1): per image
    L = w_l1 |x - x_hat|_1 + w_ssim (1 - SSIM(x, x_hat)) + w_kl KL(q(z|x) || N(0, I)) [+ w_gan lambda L_G]
with z = mean + sigma * eps drawn from the posterior, SSIM of Wang et al. (2004) and, from step
`gan_start` on, a PatchGAN generator term L_G = -D(x_hat) whose weight lambda is the adaptive weight of
Esser et al. (2021, eq. 7): |grad_{G_L} L_rec| / (|grad_{G_L} L_G| + 1e-4) at the decoder's last layer
G_L. The discriminator is not part of the trained model: `observe` takes one hinge-loss step of its
own optimizer (Lim & Ye 2017) on the batch's reconstructions after every generator step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..eval.reconstruction import ssim
from ..nn.autoencoder import KLAutoencoder, PatchDiscriminator, kl_divergence
from .base import SingleModelObjective

ADAPTIVE_DELTA = 1e-4
ADAPTIVE_MAX = 1e4


def adaptive_weight(reconstruction: Tensor, generator_loss: Tensor, last_layer: Tensor) -> Tensor:
    """Esser et al. (2021) eq. 7: the ratio of the gradient norms of the reconstruction and the GAN
    losses at `last_layer`, detached and clamped to [0, 1e4]."""
    grad_rec, = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)
    grad_gan, = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)
    return (grad_rec.norm() / (grad_gan.norm() + ADAPTIVE_DELTA)).clamp(0.0, ADAPTIVE_MAX).detach()


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat))) (Lim & Ye 2017)."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


class AutoencoderObjective(SingleModelObjective):
    """Train `autoencoder` (a KLAutoencoder) to reconstruct its input; see the module docstring.
    `gan_start`: the step from which the PatchGAN term is on (None: never). Training previews receive the
    autoencoder itself (SingleModelObjective.denoiser_for: it has no denoiser)."""

    observes_losses = True  # observe() runs every step: it counts steps and trains the discriminator

    def __init__(self, autoencoder: KLAutoencoder, *, l1_weight: float = 1.0, ssim_weight: float = 1.0,
                 kl_weight: float = 1e-6, gan_start: int | None = None, gan_weight: float = 0.5,
                 discriminator: nn.Module | None = None, discriminator_lr: float = 2e-4):
        self.model = autoencoder
        self.weights = {"l1": l1_weight, "ssim": ssim_weight, "kl": kl_weight, "gan": gan_weight}
        self.gan_start = gan_start
        self.discriminator = discriminator
        if gan_start is not None and discriminator is None:
            self.discriminator = PatchDiscriminator(autoencoder.config["in_channels"])
        self.optimizer = (torch.optim.Adam(self.discriminator.parameters(), lr=discriminator_lr, betas=(0.5, 0.9))
                          if self.discriminator is not None else None)
        self.step = 0
        self.last_terms: dict[str, float] = {}
        self._reconstructions: list[tuple[Tensor, Tensor]] = []
        self.use_module(autoencoder)

    @property
    def gan_on(self) -> bool:
        return self.gan_start is not None and self.step >= self.gan_start

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        """The images and the posterior noise eps for z = mean + sigma * eps."""
        x = batch["x"]
        noise = torch.randn((len(x), *self.model.latent_shape(tuple(x.shape[1:]))), generator=generator)
        return {"x": x, "noise": noise}

    def loss_of(self, rows: dict) -> Tensor:
        """Per-image loss (B,)."""
        x = rows["x"]
        x_hat, mean, logvar = self.train_module(x, rows["noise"].to(x.device))
        l1 = (x - x_hat).abs().flatten(1).mean(1)
        structure = 1.0 - ssim(x, x_hat)
        reconstruction = self.weights["l1"] * l1 + self.weights["ssim"] * structure
        loss = reconstruction + self.weights["kl"] * kl_divergence(mean, logvar)
        self.last_terms = {"l1": float(l1.detach().mean()), "ssim": float(1 - structure.detach().mean())}
        if self.gan_on and torch.is_grad_enabled():
            self.discriminator.to(x.device)  # in place: its optimizer keeps the same parameters
            generator_loss = -self.discriminator(x_hat).flatten(1).mean(1)
            scale = adaptive_weight(reconstruction.mean(), generator_loss.mean(), self.model.last_layer)
            loss = loss + self.weights["gan"] * scale * generator_loss
            self.last_terms["adaptive_weight"] = float(scale)
        self._reconstructions.append((x.detach(), x_hat.detach()))
        return loss

    def observe(self, rows: dict, losses: Tensor) -> None:
        """Count the step; with the GAN on, one discriminator step on this step's reconstructions."""
        if self.gan_on and self._reconstructions:
            real = torch.cat([pair[0] for pair in self._reconstructions])
            fake = torch.cat([pair[1] for pair in self._reconstructions])
            self.optimizer.zero_grad(set_to_none=True)
            loss = hinge_discriminator_loss(self.discriminator(real), self.discriminator(fake))
            loss.backward()
            self.optimizer.step()
            self.last_terms["discriminator"] = float(loss.detach())
        self._reconstructions.clear()
        self.step += 1

    def state(self) -> dict[str, Tensor]:
        """The step count and the discriminator's weights (its optimizer moments are not kept)."""
        state = {"step": torch.tensor([self.step])}
        if self.discriminator is not None:
            state.update({f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()})
        return state

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.step = int(state["step"][0])
        if self.discriminator is not None:
            prefix = "discriminator."
            self.discriminator.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def describe(self, rows: dict) -> str:
        return f"autoencoder batch of {tuple(rows['x'].shape)} images"
