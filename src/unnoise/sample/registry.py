"""The one table of samplers: `SAMPLERS[name]` is a `SamplerSpec` saying how to run it, how many model
calls a step costs, which grid it uses by default and which options it takes. The command line, the
pipeline, the budget helpers and the benchmarks all read this table; nothing keeps a parallel list."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UnnoiseError, unknown_name
from .consistency import consistency_sample
from .langevin import annealed_langevin, predictor_corrector
from .multistep import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m, pc_multistep
from .ode import euler, heun
from .sde import ddim, ddpm_ancestral, euler_ancestral


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler. `function` is the plain sampler `f(D, x, sigmas, *, cond, noise, callback, **options)`
    (None for `auto`, whose solver is calibrated per model). A run of n grid steps makes
    `calls_per_step * n - saved_on_last` model calls, or `calls(n, options)` when that depends on options.
    `stochastic`: draws fresh noise at its default options (False: a deterministic function of the
    starting noise). `noisy_options`: options that make a deterministic sampler draw noise."""

    name: str
    function: Callable | None
    description: str
    calls_per_step: int = 1
    saved_on_last: int = 0
    grid: str = "karras"
    options: tuple[str, ...] = ()
    stochastic: bool = False
    noisy_options: tuple[str, ...] = ()
    calls: Callable[[int, dict], int] | None = field(default=None, compare=False)

    @property
    def calibrated(self) -> bool:
        """True for `auto`: its solver and grid are calibrated on the model for a budget of model calls."""
        return self.function is None

    def model_calls(self, steps: int, options: dict | None = None) -> int:
        """Model calls of a run of `steps` grid steps with `options`."""
        if self.calls is not None:
            return self.calls(steps, options or {})
        return max(1, self.calls_per_step * steps - self.saved_on_last)

    def steps_for_nfe(self, nfe: int, options: dict | None = None) -> int:
        """The most grid steps whose model calls fit in `nfe` (at least one)."""
        steps = max(1, (nfe + self.saved_on_last) // self.calls_per_step)
        while steps > 1 and self.model_calls(steps, options) > nfe:
            steps -= 1
        return steps

    def check_options(self, options: dict, where: str = "") -> None:
        """One-line error for an option this sampler does not take."""
        for key in options:
            if key not in self.options:
                valid = ", ".join(self.options) or "none"
                raise UnnoiseError(f"{where}{key} does not apply to sampler {self.name!r} (its options: {valid})")

    def bind(self, **options) -> Callable:
        """The sampler function with `options` bound (checked against `self.options`)."""
        if self.function is None:
            raise UnnoiseError(f"sampler {self.name!r} is calibrated per model: sample through "
                               "unnoise.pipeline.Pipeline or unnoise.sample.auto.cache.auto_sampler")
        self.check_options(options)
        return functools.partial(self.function, **options) if options else self.function


def _langevin_pc_calls(steps: int, options: dict) -> int:
    return steps * (1 + int(options.get("corrector_steps", 1)))  # corrector steps + the predictor's call


def _annealed_calls(steps: int, options: dict) -> int:
    per_level = int(options.get("steps_per_level", 100))
    return steps * per_level + int(bool(options.get("denoise_last", True)))


_SPECS = [
    SamplerSpec("auto", None, "solver and grid calibrated on the model for the budget (cached in the run)"),
    SamplerSpec("euler", euler, "Euler steps of the probability-flow ODE"),
    SamplerSpec("heun", heun, "EDM Algorithm 2 (2nd order; --churn adds noise)", calls_per_step=2,
                saved_on_last=1, options=("churn", "s_tmin", "s_tmax", "s_noise"), noisy_options=("churn",)),
    SamplerSpec("ddim", ddim, "DDIM (--eta 0 deterministic, 1 ancestral)", options=("eta",),
                noisy_options=("eta",)),
    SamplerSpec("ddpm", ddpm_ancestral, "DDPM ancestral steps (uses a run's learned variances)", stochastic=True),
    SamplerSpec("euler_ancestral", euler_ancestral, "Euler step then fresh noise", options=("eta",),
                stochastic=True),
    SamplerSpec("dpmpp_2m", dpmpp_2m, "DPM-Solver++(2M)", grid="log_snr", options=("final",)),
    SamplerSpec("dpmpp_3m", dpmpp_3m, "DPM-Solver++(3M)", grid="log_snr", options=("final",)),
    SamplerSpec("dpmpp_2m_sde", dpmpp_2m_sde, "DPM-Solver++(2M) SDE", stochastic=True),
    SamplerSpec("pc_multistep", pc_multistep, "multistep predictor + corrector (UniPC-style)", grid="log_snr",
                options=("order", "final")),
    SamplerSpec("langevin_pc", predictor_corrector, "predictor-corrector with a Langevin corrector",
                options=("snr", "corrector_steps"), stochastic=True, calls=_langevin_pc_calls),
    SamplerSpec("annealed_langevin", annealed_langevin, "annealed Langevin dynamics (Song & Ermon 2019)",
                options=("step_size", "steps_per_level", "denoise_last"), stochastic=True, calls=_annealed_calls),
    SamplerSpec("consistency", consistency_sample, "consistency model: 1 step, or multistep with re-noising "
                "(Song et al. 2023)", grid="nested", stochastic=True),
    SamplerSpec("progressive", ddim, "deterministic DDIM on the nested grid a progressive-distilled student "
                "learned (Salimans & Ho 2022)", grid="nested"),
]
SAMPLERS: dict[str, SamplerSpec] = {spec.name: spec for spec in _SPECS}
FIXED = tuple(name for name, spec in SAMPLERS.items() if not spec.calibrated)  # samplers run on a given grid
STOCHASTIC = frozenset(name for name, spec in SAMPLERS.items() if spec.stochastic or spec.noisy_options)
DETERMINISTIC = tuple(name for name, spec in SAMPLERS.items() if not spec.stochastic)  # at default options


def sampler_spec(name: str) -> SamplerSpec:
    """The registered sampler `name` (one-line error listing the valid names)."""
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, SAMPLERS)
    return SAMPLERS[name]


def get_sampler(name: str, **options) -> Callable:
    """The sampler function registered as `name`, with options (eta, churn, ...) bound."""
    return sampler_spec(name).bind(**options)


def sampler_help() -> str:
    """The samplers, one `name: description` each, for command-line help."""
    return "; ".join(f"{name}: {spec.description}" for name, spec in SAMPLERS.items())
