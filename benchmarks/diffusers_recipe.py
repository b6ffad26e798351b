"""The standard diffusers training recipe, shared by the races against it (quality_race.py,
quality_vs_diffusers.py): `DDPMScheduler` (epsilon prediction, linear betas 1e-4..0.02, 1000 steps) and the
settings of diffusers' train_unconditional example: AdamW at 1e-4 (betas 0.95/0.999, weight decay 1e-6),
a cosine schedule with warm-up, gradient clipping at 1, EMA with power 3/4."""
from __future__ import annotations

import torch


class DiffusersRecipe:
    """Trains `model` (a diffusers UNet2DModel) one batch at a time on shuffled epochs of `images`."""

    def __init__(self, model, images: torch.Tensor, steps: int, batch: int, seed: int = 0, warmup: int = 500):
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_cosine_schedule_with_warmup
        from diffusers.training_utils import EMAModel

        self.model, self.images, self.batch = model.train(), images, batch
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6,
                                           eps=1e-8)
        self.lr_schedule = get_cosine_schedule_with_warmup(self.optimizer, num_warmup_steps=warmup,
                                                           num_training_steps=steps)
        self.ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.cursor = torch.randperm(len(images), generator=self.generator), 0

    def next_batch(self) -> torch.Tensor:
        """The next batch of a shuffled epoch, as a DataLoader with shuffle=True and drop_last=True."""
        if self.cursor + self.batch > len(self.order):
            self.order, self.cursor = torch.randperm(len(self.images), generator=self.generator), 0
        x0 = self.images[self.order[self.cursor:self.cursor + self.batch]]
        self.cursor += self.batch
        return x0

    def step(self) -> float:
        """One optimisation step on the epsilon-prediction MSE; returns the loss."""
        x0 = self.next_batch()
        noise = torch.randn(x0.shape, generator=self.generator)
        t = torch.randint(0, 1000, (len(x0),), generator=self.generator)
        loss = torch.nn.functional.mse_loss(self.model(self.scheduler.add_noise(x0, noise, t), t).sample, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.lr_schedule.step()
        self.ema.step(self.model.parameters())
        return loss.detach().item()

    def ema_model(self):
        """A copy of the model holding the EMA weights, in eval mode (training continues on the original)."""
        import copy

        snapshot = copy.deepcopy(self.model)
        self.ema.copy_to(snapshot.parameters())
        return snapshot.eval()
