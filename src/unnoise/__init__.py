"""unnoise: diffusion models around one contract, the denoiser D(x, sigma, cond) -> x0_hat."""
__version__ = "0.1.0"
