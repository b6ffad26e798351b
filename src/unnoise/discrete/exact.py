"""A tiny enumerable reference: sequences of a known Markov chain, with the exact posterior p(x_0 | x_t).

With K symbols and length L there are K^L sequences (81 for 3 symbols and length 4), so the data likelihood,
the posterior marginals p(x_0^n | x_t), the continuous-time ELBO and the discrete-time D3PM bound can all be
computed by enumeration in float64 and compared with the library's loss and samplers.
"""
from __future__ import annotations

import math
from itertools import combinations

import torch
from torch import Tensor

from .loss import elbo_terms
from .process import CategoricalProcess


def all_sequences(symbols: int, length: int) -> Tensor:
    """Every sequence over `symbols` ids of `length`, in lexicographic order: (symbols^length, length)."""
    grids = torch.meshgrid(*[torch.arange(symbols)] * length, indexing="ij")
    return torch.stack([grid.reshape(-1) for grid in grids], -1)


class MarkovChainReference:
    """x_0^1 ~ initial, x_0^{n+1} ~ transition[x_0^n]; everything about it in closed form by enumeration."""

    def __init__(self, initial, transition, length: int = 4):
        self.initial = torch.as_tensor(initial, dtype=torch.float64)
        self.transition = torch.as_tensor(transition, dtype=torch.float64)
        self.symbols, self.length = self.initial.shape[0], int(length)
        self.sequences = all_sequences(self.symbols, self.length)  # (S, L)
        log_p = torch.log(self.initial)[self.sequences[:, 0]]
        for n in range(1, self.length):
            log_p = log_p + torch.log(self.transition)[self.sequences[:, n - 1], self.sequences[:, n]]
        self.log_probs = log_p  # (S,)
        self._tables: dict[tuple[str, float], Tensor] = {}
        self._counts: dict[int, Tensor] = {}

    @property
    def probs(self) -> Tensor:
        return self.log_probs.exp()

    def index_of(self, tokens: Tensor, base: int | None = None) -> Tensor:
        """Lexicographic index of each row of `tokens` (B, L) over `base` ids (default: the symbols)."""
        base = self.symbols if base is None else base
        weights = base ** torch.arange(self.length - 1, -1, -1, device=tokens.device)
        return (tokens.long() * weights).sum(-1)

    def posterior_table(self, process: CategoricalProcess, t: float) -> Tensor:
        """p(x_0^n = k | x_t) for every noisy sequence x_t: (input_size^L, L, K) float64, rows in index_of order."""
        t = 0.5 if not process.time_conditioned else float(t)
        key = (process.kind, float(process.alpha(torch.tensor(t, dtype=torch.float64))))  # it depends on alpha(t)
        if key not in self._tables:
            log_q = torch.log(process.marginal_matrix(t)).clamp_min(-1e4)  # (I, I), rows x_0; e^-1e4 == 0.0
            log_lik = self._pair_counts(process.input_size) @ log_q.reshape(-1)  # (N, S)
            posterior = torch.softmax(log_lik + self.log_probs, -1)  # (N, S)
            onehot = torch.nn.functional.one_hot(self.sequences, self.symbols).to(torch.float64)  # (S, L, K)
            self._tables[key] = torch.einsum("ns,slk->nlk", posterior, onehot)
        return self._tables[key]

    def _pair_counts(self, size: int) -> Tensor:
        """How many positions n have (x_0^n, x_t^n) = (i, j), for every noisy x_t and clean x_0: (N, S, I * I)."""
        if size not in self._counts:
            noisy = all_sequences(size, self.length)
            pairs = self.sequences.unsqueeze(0) * size + noisy.unsqueeze(1)  # (N, S, L)
            counts = torch.nn.functional.one_hot(pairs, size * size).sum(-2)
            self._counts[size] = counts.to(torch.float64)
        return self._counts[size]

    def model(self, process: CategoricalProcess):
        """The exact denoiser as a model: (x_t (B, L), t (B,)) -> log p(x_0^n | x_t) as logits (B, L, K)."""
        def exact_logits(x_t: Tensor, t: Tensor) -> Tensor:
            codes = self.index_of(x_t.cpu(), process.input_size)
            t = t.detach().cpu().to(torch.float64).expand(x_t.shape[0])
            values = torch.unique(t).tolist()
            if len(values) == 1:
                return torch.log(self.posterior_table(process, values[0])[codes]).to(x_t.device)
            out = torch.empty(x_t.shape[0], self.length, self.symbols, dtype=torch.float64)
            for value in values:
                rows = t == value
                out[rows] = self.posterior_table(process, value)[codes[rows]]
            return torch.log(out).to(x_t.device)
        exact_logits.time_conditioned = process.time_conditioned
        return exact_logits

    def absorbing_closed_form(self) -> Tensor:
        """Absorbing ELBO with the exact posterior, integrated in closed form (S,): substituting a = alpha(t),
        int_0^1 a^(L-k) (1-a)^(k-1) da = (L-k)!(k-1)!/L!, so the bound is an average over unmasking orders."""
        length, total = self.length, torch.zeros(len(self.sequences), dtype=torch.float64)
        from .process import AbsorbingProcess
        process = AbsorbingProcess(self.symbols)
        table = self.posterior_table(process, 0.5)
        for k in range(1, length + 1):
            weight = math.factorial(length - k) * math.factorial(k - 1) / math.factorial(length)
            for masked in combinations(range(length), k):
                noisy = self.sequences.clone()
                noisy[:, list(masked)] = process.mask_id
                marginals = table[self.index_of(noisy, process.input_size)]  # (S, L, K)
                chosen = marginals.gather(-1, self.sequences.unsqueeze(-1)).squeeze(-1)[:, list(masked)]
                total += weight * (-torch.log(chosen)).sum(-1)
        return total

    def _noisy_pairs(self, process: CategoricalProcess, t: float) -> tuple[Tensor, Tensor, Tensor]:
        """Every (x_0, x_t) pair: indices into sequences (P,), noisy tokens (P, L) and q_t(x_t | x_0) (P,)."""
        noisy = all_sequences(process.input_size, self.length)
        clean_index = torch.arange(len(self.sequences)).repeat_interleave(len(noisy))
        noisy_tokens = noisy.repeat(len(self.sequences), 1)
        q = process.marginal_matrix(t)[self.sequences[clean_index], noisy_tokens].prod(-1)
        return clean_index, noisy_tokens, q

    def expected_loss(self, process: CategoricalProcess, t: float) -> Tensor:
        """E_{x_t ~ q_t(.|x_0)} of the library's ELBO integrand with the exact posterior plugged in: (S,)."""
        clean_index, noisy, q = self._noisy_pairs(process, t)
        keep = q > 0
        clean_index, noisy, q = clean_index[keep], noisy[keep], q[keep]
        times = torch.full((len(q),), float(t), dtype=torch.float64)
        logits = self.model(process)(noisy, times)
        terms = elbo_terms(process, logits, self.sequences[clean_index], noisy, times)
        return torch.zeros(len(self.sequences), dtype=torch.float64).index_add_(0, clean_index, q * terms)

    def continuous_elbo(self, process: CategoricalProcess, nodes: int = 64) -> Tensor:
        """The time integral of expected_loss by Gauss-Legendre quadrature: (S,) nats.

        The uniform integrand grows like -log t at t -> 0, so the rule runs over v in (0, 1) with t = v^3,
        dt = 3 v^2 dv, which leaves a smooth integrand.
        """
        import numpy as np
        points, weights = np.polynomial.legendre.leggauss(nodes)
        total = torch.zeros(len(self.sequences), dtype=torch.float64)
        for point, weight in zip(points, weights):
            v = 0.5 * (float(point) + 1.0)
            total += 0.5 * float(weight) * 3.0 * v * v * self.expected_loss(process, v ** 3)
        return total

    def ctmc_integrand(self, process: CategoricalProcess, t: float) -> Tensor:
        """The same integrand from the sequence-level CTMC, independent of the x_0 parameterisation: (S,).

        Lou et al. 2024 eq. 9: sum over x_t of q_t(x_t | x_0) and over one-token jumps y -> x_t of the forward rate
        Q_t(x_t, y) times r * phi(s / r), with s = p_t(y) / p_t(x_t) from the enumerated noisy marginal p_t and
        r = q_t(y | x_0) / q_t(x_t | x_0); a jump with r = 0 contributes Q_t * s.
        """
        size, t_value = process.input_size, torch.tensor(t, dtype=torch.float64)
        beta = float(-process.schedule.alpha_derivative(t_value) / process.alpha(t_value))
        noise = process.marginal_matrix(1.0)[0]  # pi: the time-1 distribution of every token
        noisy = all_sequences(size, self.length)  # (N, L)
        q = process.marginal_matrix(t)[self.sequences.unsqueeze(1), noisy.unsqueeze(0)].prod(-1)  # (S, N)
        marginal = self.probs @ q  # p_t(x_t), (N,)
        total = torch.zeros(len(self.sequences), dtype=torch.float64)
        for n in range(self.length):
            for b in range(size):
                jumped = noisy.clone()
                jumped[:, n] = b
                moved = noisy[:, n] != b  # (N,)
                rate = beta * noise[noisy[:, n]]  # forward rate b -> x_t^n, (N,)
                source = self.index_of(jumped, size)
                s = marginal[source] / marginal  # (N,)
                r = q[:, source] / q  # (S, N); nan where q = 0 (weighted by q below)
                phi_term = torch.where(r > 0, r * (s / r - 1 - torch.log(s / r)), s.expand_as(r))
                weight = torch.where(q > 0, q, torch.zeros_like(q)) * (rate * moved)
                total += torch.where(weight > 0, weight * phi_term, torch.zeros_like(q)).sum(-1)
        return total

    def discrete_time_elbo(self, process: CategoricalProcess, steps: int) -> Tensor:
        """The D3PM bound with `steps` equal time steps and the exact posterior as x_0 model: (S,) nats.

        Austin et al. 2021 eq. 1: sum over steps of E_q KL(q(x_s | x_t, x_0) || p(x_s | x_t)), with
        p(x_s | x_t) = sum_c p(x_0^n = c | x_t) q(x_s | x_t, c) per position (their eq. 4), the last step's KL
        being -log p(x_0 | x_t1); the prior term vanishes since alpha(1) = 0. Each reverse step factorises over
        positions, which the exact joint does not, so this bound exceeds -log p(x_0) and tends to it as steps grow.
        """
        total = torch.zeros(len(self.sequences), dtype=torch.float64)
        for step in range(1, int(steps) + 1):
            s, t = (step - 1) / steps, step / steps
            clean_index, noisy, q = self._noisy_pairs(process, t)
            keep = q > 0
            clean_index, noisy, q = clean_index[keep], noisy[keep], q[keep]
            table = _reverse_table(process, s, t)  # (K, I, I): q(x_s = b | x_t = a, x_0 = c)
            rows = torch.arange(self.length)
            posterior = self.posterior_table(process, t)[self.index_of(noisy, process.input_size)]  # (P, L, K)
            per_clean = table[:, noisy, :].permute(1, 2, 0, 3)  # (P, L, K, I): c, then b
            model = torch.einsum("plc,plcb->plb", posterior, per_clean)
            target = per_clean[torch.arange(len(q)).unsqueeze(1), rows, self.sequences[clean_index]]  # (P, L, I)
            ratio = torch.where(target > 0, target / model, torch.ones_like(target))
            kl = (target * torch.log(ratio)).sum((-1, -2))  # (P,)
            total.index_add_(0, clean_index, q * kl)
        return total


def _reverse_table(process: CategoricalProcess, s: float, t: float) -> Tensor:
    """q(x_s = b | x_t = a, x_0 = c) = q(x_t = a | x_s = b) q_s(b | c) / q_t(a | c) for tokens c: (K, I, I)."""
    forward = process.transition_matrix(s, t) if s > 0 else process.marginal_matrix(t)  # (I, I): b -> a
    reach_s = process.marginal_matrix(s)[: process.vocab_size]  # (K, I): c -> b
    reach_t = process.marginal_matrix(t)[: process.vocab_size]  # (K, I): c -> a
    joint = reach_s.unsqueeze(1) * forward.T.unsqueeze(0)  # (K, a, b) = q_s(b | c) q(a | b)
    denominator = reach_t.unsqueeze(-1)  # (K, a, 1)
    return torch.where(denominator > 0, joint / denominator.clamp_min(1e-300), torch.zeros_like(joint))


def sampler_distribution(reference: MarkovChainReference, process: CategoricalProcess, steps: int) -> Tensor:
    """The exact output distribution (S,) of the ancestral sampler on the grid t_i = i / steps with the exact
    posterior as model, by propagating the distribution over all noisy sequences through every reverse step."""
    noisy = all_sequences(process.input_size, reference.length)  # (N, L)
    prior = process.marginal_matrix(1.0)[0][noisy].prod(-1)  # (N,): all-mask point mass, or uniform
    rows, length = torch.arange(len(noisy)), reference.length
    for step in range(int(steps), 0, -1):
        t, s = step / steps, (step - 1) / steps
        posterior = reference.posterior_table(process, t)  # (N, L, K)
        times = torch.full((len(noisy),), t, dtype=torch.float64)
        reverse = process.reverse_probs(posterior, noisy, times, torch.full_like(times, s))  # (N, L, I)
        moves = reverse[rows.view(-1, 1, 1), torch.arange(length).view(1, -1, 1), noisy.T.unsqueeze(0)]  # (N, L, N)
        prior = prior @ moves.prod(1)
    return prior[reference.index_of(reference.sequences, process.input_size)]
