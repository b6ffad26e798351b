"""Settings and helpers shared by every test.

A fixed number of intra-op threads: 2 unless OMP_NUM_THREADS says otherwise. Results then do not depend
on how many cores the machine has, the tests exercise the multi-threaded kernels (whose reduction order
differs from the single-threaded ones), and `OMP_NUM_THREADS=1` on a shared machine really means one
thread: OpenMP barriers spin, so two threads per process on an oversubscribed machine crawl.
"""
import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))


def assert_close_eps(actual: torch.Tensor, expected: torch.Tensor, ulps: float = 64, scale=None, what: str = ""):
    """Assert ``max |actual - expected| <= ulps * eps(dtype) * scale``.

    For results of one computation done two ways that round differently: with different batch sizes, in
    two module instances, with different thread counts or instruction sets. Such results are not
    bit-identical across CPUs: oneDNN and ATen pick a kernel per shape, thread count and instruction set
    (AVX2, AVX-512, AMX), and each kernel sums in its own order. Each rounding is worth half a unit in the
    last place (eps) of the magnitudes involved, so the bound is a number of those units times the values'
    scale (default: ``max |expected|``) instead of an absolute figure that happens to pass on one machine.
    ``ulps`` covers the depth of the computation (a few for one matmul, tens for a deep network).
    Things bit-exact by construction (same inputs and batch, a resumed run) are compared with torch.equal.
    """
    assert actual.shape == expected.shape, f"{what}shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    dtype = torch.promote_types(actual.dtype, expected.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float32
    a, b = actual.to(dtype), expected.to(dtype)
    assert torch.equal(a.isnan(), b.isnan()), f"{what}NaNs in different places"
    a, b = a.nan_to_num(0.0), b.nan_to_num(0.0)
    eps = torch.finfo(dtype).eps
    scale = float(b.abs().max()) if scale is None else float(scale)
    scale = max(scale, torch.finfo(dtype).tiny)
    error = float((a - b).abs().max()) if a.numel() else 0.0
    assert error <= ulps * eps * scale, (
        f"{what}max |difference| {error:.3g} is {error / (eps * scale):.1f} eps x scale {scale:.3g} "
        f"({dtype}), over the bound of {ulps}")


@pytest.fixture(name="assert_close_eps")
def assert_close_eps_fixture():
    """``assert_close_eps`` as a fixture, so test modules in any folder reach it without importing conftest."""
    return assert_close_eps


@pytest.fixture
def user_error(capsys):
    """Run `unnoise ARGV` in-process and check it failed as a user error: exit code 2 and exactly one line
    on stderr, with no traceback, containing every fragment. Returns that line."""
    from unnoise.cli.main import main

    def check(argv, *fragments):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        for fragment in fragments:
            assert fragment in err[0], err[0]
        return err[0]

    return check
