"""Progressive distillation (Salimans & Ho 2022, Alg. 2): a student, initialised from its teacher, learns to
take in one deterministic DDIM step what the teacher does in two; repeating with the student as the next
teacher halves the step count each round.

In VE coordinates a DDIM step (eta = 0) from sigma to sigma' is x' = x0 + r (x - x0) with r = sigma' / sigma.
Two teacher steps sigma -> sigma' -> sigma'' with estimates x0_1 = T(x, sigma), x0_2 = T(x', sigma') give
    x'' = (1 - r2) x0_2 + r2 (1 - r1) x0_1 + r1 r2 x,      r1 = sigma'/sigma, r2 = sigma''/sigma',
and the one student step x'' = (1 - r1 r2) x0_s + r1 r2 x matches it for the x0 target
    x0_s = w1 x0_1 + w2 x0_2,   w1 = r2 (1 - r1) / (1 - r1 r2),   w2 = (1 - r2) / (1 - r1 r2).
That is Eq. 8 of the paper, x0_s = (x'' - r x) / (1 - r), with the subtraction done analytically: the
direct form divides a difference of nearly equal terms by 1 - r, which vanishes as the two levels of a
step approach each other (many steps near sigma_min), so its rounding error is amplified by 1 / (1 - r).
The convex form has weights in [0, 1] summing to 1, computed from log-ratios with expm1 in float64, and at
sigma'' = 0 it is exactly x0_2 (r2 = 0). The student is trained in x0 space with the "SNR+1" weight
(Sec. 4 of the paper; its v-loss) written for data of scale sigma_data: (sigma^2 + sigma_data^2) /
(sigma sigma_data)^2, or the "truncated SNR" max(sigma_data^2 / sigma^2, 1) / sigma_data^2.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UnnoiseError
from ..param import Denoiser
from .base import trainable

WEIGHTINGS = ("snr+1", "truncated")
FRAGILE_PREDICTIONS = ("eps", "score")  # x0 = x - sigma eps: errors times sigma_max at one step


def check_student_prediction(prediction: str, steps: int) -> None:
    """Refuse an eps- or score-predicting student for 1 or 2 steps: its x0 = x - sigma * out turns an output
    error into sigma_max times that error at the first step, and the paper's 1-2-step students failed with
    it (Salimans & Ho 2022, Sec. 4); x0, v, edm and velocity students keep the error bounded."""
    if prediction in FRAGILE_PREDICTIONS and steps <= 2:
        raise UnnoiseError(f"model.prediction={prediction!r}: a {steps}-step progressive student needs x0, v or edm "
                           "prediction (eps/score amplify errors by sigma_max at one step); distill an eps "
                           "teacher down to 4 steps, or start from a v/x0/edm teacher")


def _per_sample(c: Tensor, like: Tensor) -> Tensor:
    return c.to(device=like.device, dtype=like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def two_step_weights(sigma: Tensor, sigma_mid: Tensor, sigma_next: Tensor) -> tuple[Tensor, Tensor]:
    """(w1, w2) of the module docstring for per-sample levels sigma > sigma_mid > sigma_next >= 0, float64."""
    sigma, sigma_mid, sigma_next = (s.to(torch.float64) for s in (sigma, sigma_mid, sigma_next))
    log_r1 = sigma_mid.log() - sigma.log()
    log_r2 = sigma_next.log() - sigma_mid.log()  # -inf at sigma_next = 0
    one_minus_r1r2 = -torch.expm1(log_r1 + log_r2)
    w1 = log_r2.exp() * -torch.expm1(log_r1) / one_minus_r1r2
    w2 = -torch.expm1(log_r2) / one_minus_r1r2
    return w1, w2


def ddim_step(x: Tensor, x0: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """Deterministic DDIM step x' = x0 + (sigma' / sigma) (x - x0) with per-sample levels (float64 ratio)."""
    ratio = sigma_next.to(torch.float64) / sigma.to(torch.float64)
    return x0 + _per_sample(ratio, x) * (x - x0)


@torch.no_grad()
def progressive_target(teacher, x: Tensor, sigma: Tensor, sigma_mid: Tensor, sigma_next: Tensor,
                       cond=None) -> Tensor:
    """The x0 target (float64) whose single DDIM step sigma -> sigma_next equals the teacher's two DDIM
    steps sigma -> sigma_mid -> sigma_next from x; the teacher runs in its own dtype."""
    dtype = x.dtype
    x64 = x.to(torch.float64)
    x0_first = teacher(x, sigma, cond).to(torch.float64)
    x_mid = ddim_step(x64, x0_first, sigma, sigma_mid)
    x0_second = teacher(x_mid.to(dtype), sigma_mid, cond).to(torch.float64)
    w1, w2 = two_step_weights(sigma, sigma_mid, sigma_next)
    return _per_sample(w1, x64) * x0_first + _per_sample(w2, x64) * x0_second


def x0_weight(sigma: Tensor, sigma_data: float, weighting: str = "snr+1") -> Tensor:
    """The per-sample weight of the x0-space squared error (module docstring), float64."""
    sigma = sigma.to(torch.float64)
    snr = sigma_data**2 / sigma**2
    if weighting == "snr+1":
        return (snr + 1) / sigma_data**2
    if weighting == "truncated":
        return snr.clamp(min=1.0) / sigma_data**2
    raise UnnoiseError(f"model.distill.weighting: unknown {weighting!r}; valid: {', '.join(WEIGHTINGS)}")


def check_nested(student_sigmas: Tensor, teacher_sigmas: Tensor) -> None:
    """The teacher's grid must have twice the steps and contain the student's grid at its even points."""
    if len(teacher_sigmas) != 2 * len(student_sigmas) - 1 or not torch.equal(teacher_sigmas[::2], student_sigmas):
        raise UnnoiseError(f"progressive distillation: the teacher's {len(teacher_sigmas) - 1}-step grid does not "
                           f"hold the student's {len(student_sigmas) - 1}-step grid at its even points")


class ProgressiveObjective:
    """One round of progressive distillation: `student` (a Denoiser whose `net` is trained, initialised from
    the teacher) learns one DDIM step per two of the frozen `teacher` on `student_sigmas` (N + 1 levels
    ending at 0; the teacher's grid `teacher_sigmas` has 2N + 1 with the student's at its even points).
    Training levels are the student's grid levels, drawn uniformly (Alg. 2)."""

    def __init__(self, student: Denoiser, teacher, conditions, student_sigmas: Tensor, teacher_sigmas: Tensor,
                 *, weighting: str = "snr+1", cond_dropout: float = 0.0):
        check_nested(student_sigmas, teacher_sigmas)
        check_student_prediction(student.prediction, len(student_sigmas) - 1)
        x0_weight(student_sigmas[:1], student.sigma_data, weighting)  # refuses an unknown weighting now
        self.student, self.teacher, self.conditions = student, teacher, conditions
        self.student_sigmas = student_sigmas.to(torch.float64)
        self.teacher_sigmas = teacher_sigmas.to(torch.float64)
        self.weighting, self.cond_dropout = weighting, cond_dropout
        self.model = student.net
        self.use_module(self.model)

    def denoiser_for(self, module: nn.Module) -> Denoiser:
        s = self.student
        return Denoiser(module, s.process, s.prediction, s.sigma_data, s.learned_variance)

    def use_module(self, module: nn.Module) -> None:
        self.train_denoiser = self.denoiser_for(module)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return trainable(self.model)

    def levels(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """sigma, the teacher's intermediate level and the student's next level of student step `index`."""
        index = index.cpu().long()
        return (self.student_sigmas[index], self.teacher_sigmas[2 * index + 1], self.student_sigmas[index + 1])

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        """The student step index (uniform over its N steps), the noise and the conditions after dropout."""
        x0 = batch["x"]
        steps = len(self.student_sigmas) - 1
        index = torch.randint(0, steps, (len(x0),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        cond = self.conditions.dropout(self.conditions.from_batch(batch), self.cond_dropout, generator)
        return {"x0": x0, "index": index, "noise": noise, "cond": cond}

    def loss_of(self, rows: dict) -> Tensor:
        x0, noise, cond = rows["x0"], rows["noise"], rows["cond"]
        sigma, sigma_mid, sigma_next = self.levels(rows["index"])
        x = x0 + _per_sample(sigma, x0) * noise
        _to_device(self.teacher, x0.device)
        target = progressive_target(self.teacher, x, sigma.to(x0.device), sigma_mid.to(x0.device),
                                    sigma_next.to(x0.device), cond)
        x0_hat = self.train_denoiser(x, sigma.to(x0.device), cond)
        error = (x0_hat.to(torch.float64) - target).pow(2).flatten(1).mean(1)
        return (x0_weight(sigma, self.student.sigma_data, self.weighting).to(x0.device) * error).to(x0.dtype)

    def loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        return self.loss_of(self.draw(batch, generator))

    def observe(self, rows: dict, losses: Tensor) -> None:
        pass

    def state(self) -> dict[str, Tensor]:
        return {}  # the schedule lives in the run's config (model.distill), the draws in the trainer's generators

    def load_state(self, state: dict[str, Tensor]) -> None:
        pass

    def describe(self, rows: dict) -> str:
        sigma = self.levels(rows["index"])[0]
        return (f"progressive round of {len(self.student_sigmas) - 1} steps, sigma in [{float(sigma.min()):.4g}, "
                f"{float(sigma.max()):.4g}]")


def _to_device(module, device) -> None:
    """Move a frozen teacher (an nn.Module, or a denoiser transform such as guidance around one) to the
    training device once."""
    while module is not None and not hasattr(module, "to"):
        module = getattr(module, "D", None)  # guide.DenoiserTransform keeps the wrapped denoiser as D
    parameters = getattr(module, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    if first is not None and first.device != device:
        module.to(device)
