"""Parameterizations: turn a network trained on some process into a denoiser D(x, sigma) -> x0_hat.

The network sees process coordinates x_p = alpha x + ... (x is the VE variable, x = x0 + sigma eps),
and predicts one of:
  eps    the noise                       x0 = (x_p - s eps) / alpha
  x0     the clean data                  x0 = out
  v      v = alpha eps - s x0            x0 = (alpha x_p - s v) / (alpha^2 + s^2)   (Salimans & Ho 2022)
  score  sigma * score = -eps (NCSN)     x0 = x + sigma * out                        (Song & Ermon 2019)
  velocity  u = eps - x0, the flow velocity dx_t/dt of the linear path (1 - t) x0 + t eps
                                         x0 = (x_p - s u) / (alpha + s)     (Liu et al. 2023; Lipman et al. 2023)
  edm    F with D = c_skip x + c_out F(c_in x, c_noise)                              (Eq. 7, Karras et al. 2022)
Each also gives the training target in its own output space, and the factor that converts an
error in that space to an error in x0 (used by the loss weightings).
"""
from __future__ import annotations


import torch
from torch import Tensor, nn

from .errors import unknown_name
from .process import Process

PREDICTIONS = ("eps", "x0", "v", "score", "edm", "velocity")


def _expand(c: Tensor, like: Tensor) -> Tensor:
    return c.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


class Denoiser(nn.Module):
    """D(x, sigma, cond) -> x0_hat for `net(x_in, noise_input, cond)` trained with `prediction`."""

    def __init__(self, net: nn.Module, process: Process, prediction: str = "eps", sigma_data: float = 0.5,
                 learned_variance: bool = False):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise unknown_name("prediction", prediction, PREDICTIONS)
        self.net = net
        self.process = process
        self.prediction = prediction
        self.sigma_data = sigma_data
        # the network also emits v in [-1, 1] per element: the reverse variance (vlb.learned_log_variance)
        self.learned_variance = learned_variance

    def edm_coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in, c_noise of Table 1, Karras et al. 2022 (c_noise scaled by 1000)."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = 250 * sigma.log()
        return c_skip, c_out, c_in, c_noise

    def network_io(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The network's input and noise-conditioning value for VE state x at level sigma."""
        sigma = sigma.to(torch.float64)
        if self.prediction == "edm":
            _, _, c_in, c_noise = self.edm_coefficients(sigma)
            return x * _expand(c_in, x), c_noise.to(x.dtype)
        alpha, _ = self.process.coefficients(sigma)
        return x * _expand(alpha, x), self.process.noise_input(sigma).to(x.dtype)

    def forward(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        return self.denoise_with_variance(x, sigma, cond)[0]

    def denoise_with_variance(self, x: Tensor, sigma: Tensor, cond=None) -> tuple[Tensor, Tensor | None]:
        """(x0 estimate, the variance output v or None) in one network call."""
        sigma = _as_batch(sigma, x)
        x_in, noise_in = self.network_io(x, sigma)
        out, v = self.split_output(self.net(x_in, noise_in, cond), x)
        return self.to_x0(out, x, sigma), v

    def split_output(self, out: Tensor, like: Tensor) -> tuple[Tensor, Tensor | None]:
        """The prediction and (with learned variance) the variance output, each shaped like `like`:
        (B, 2C, ...) or (B, 2D) -> two of (B, C, ...) or (B, D)."""
        if not self.learned_variance:
            return out, None
        halves = out.reshape(out.shape[0], 2, -1)
        return halves[:, 0].reshape(like.shape), halves[:, 1].reshape(like.shape)

    def to_x0(self, out: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """Convert the network output at VE state x, level sigma, to the x0 estimate."""
        sigma64 = sigma.to(torch.float64)
        if self.prediction == "edm":
            c_skip, c_out, _, _ = self.edm_coefficients(sigma64)
            return _expand(c_skip, x) * x + _expand(c_out, x) * out
        if self.prediction == "x0":
            return out
        if self.prediction == "score":
            return x + _expand(sigma64, x) * out
        alpha, s = self.process.coefficients(sigma64)
        x_p = x * _expand(alpha, x)
        if self.prediction == "eps":
            return (x_p - _expand(s, x) * out) / _expand(alpha, x)
        if self.prediction == "velocity":
            return (x_p - _expand(s, x) * out) / _expand(alpha + s, x)
        return (_expand(alpha, x) * x_p - _expand(s, x) * out) / _expand(alpha**2 + s**2, x)  # v

    def target(self, x0: Tensor, noise: Tensor, alpha: Tensor, s: Tensor) -> Tensor:
        """Training target in the network's output space for x_p = alpha x0 + s noise."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        if self.prediction == "score":
            return -noise
        if self.prediction == "v":
            return _expand(alpha, x0) * noise - _expand(s, x0) * x0
        if self.prediction == "velocity":
            return noise - x0
        sigma = s / alpha
        c_skip, c_out, _, _ = self.edm_coefficients(sigma)
        x = x0 + _expand(sigma, x0) * noise
        return (x0 - _expand(c_skip, x0) * x) / _expand(c_out, x0)

    def network_input(self, x0: Tensor, noise: Tensor, alpha: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Network input and noise-conditioning for training, finite even where alpha = 0."""
        if self.prediction == "edm":
            return self.network_io(x0 + _expand(s / alpha, x0) * noise, s / alpha)
        x_p = _expand(alpha, x0) * x0 + _expand(s, x0) * noise
        sigma = s / alpha  # may be inf at the top of a zero-terminal-SNR chain; noise_input handles it
        return x_p, self.process.noise_input(sigma).to(x0.dtype)


def model_dtype(D, default: torch.dtype) -> torch.dtype:
    """The dtype D's parameters compute in (`default` for parameter-free denoisers such as exact ones)."""
    parameters = getattr(D, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return default if first is None else first.dtype


def _as_batch(sigma, x: Tensor) -> Tensor:
    sigma = torch.as_tensor(sigma, device=x.device)
    if sigma.dim() == 0:
        sigma = sigma.expand(x.shape[0])
    return sigma


def x0_error_scales(prediction: str, alpha: Tensor, s: Tensor, sigma_data: float) -> tuple[Tensor, Tensor]:
    """(k^2, snr * k^2) where k converts an error in the network's output space to one in x0.

    Written so that both stay finite at alpha = 0 (zero terminal SNR), except eps/score's k^2 = inf
    there, which only ever meets a min() (min-SNR) or a weight that is zero.
    """
    a2, s2 = alpha**2, s**2
    if prediction in ("eps", "score"):
        return s2 / a2, torch.ones_like(a2)
    if prediction == "x0":
        return torch.ones_like(a2), a2 / s2
    if prediction == "v":
        norm2 = (a2 + s2) ** 2
        return s2 / norm2, a2 / norm2
    if prediction == "velocity":  # k = s / (alpha + s)
        norm2 = (alpha + s) ** 2
        return s2 / norm2, a2 / norm2
    sd2 = sigma_data**2  # edm: k = c_out
    return s2 * sd2 / (s2 + a2 * sd2), a2 * sd2 / (s2 + a2 * sd2)
