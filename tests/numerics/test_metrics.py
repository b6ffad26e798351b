"""Evaluation metrics against closed forms and scipy."""
import numpy as np
import pytest
import torch

from unnoise.eval.metrics import fd, frechet_distance, kid, precision_recall


def random_covariance(d, generator):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert abs(fd(x, x)) < 1e-8


def test_frechet_distance_between_diagonal_gaussians_is_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float((mu1 - mu2).pow(2).sum() + (var1.sqrt() - var2.sqrt()).pow(2).sum())
    got = frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2))
    assert abs(got - expected) < 1e-12


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(1)
    for d in (4, 32, 64):
        mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
        s1, s2 = random_covariance(d, g), random_covariance(d, g)
        covmean = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
        reference = float(np.sum((mu1 - mu2).numpy() ** 2) + np.trace(s1.numpy()) + np.trace(s2.numpy())
                          - 2 * np.trace(covmean))
        assert abs(frechet_distance(mu1, s1, mu2, s2) - reference) <= 1e-6 * abs(reference)


def test_kid_is_unbiased_on_equal_distributions_and_positive_on_different_ones():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    mean, stderr = kid(a, b)
    assert abs(mean) < 3 * stderr
    shifted, _ = kid(a, b + 0.5)
    assert shifted > 20 * stderr


def test_precision_recall_of_identical_and_disjoint_sets():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(300, 4, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    narrow = real[:, :] * 0.1  # all generated samples in the bulk of the real ones: precise, poor recall
    precision, recall = precision_recall(real, narrow)
    assert precision > 0.9 and recall < 0.5
