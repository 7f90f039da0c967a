"""The regularizers the paper's guidelines name, as plain functions with one job each.

Overfitting remedies (Guideline 4.1): dropout (inside the networks), VIB, L1, L2 (Adam weight
decay, as in the authors' code). Underfitting remedies (Guideline 4.2): DR3 and bigger / ResNet
encoders (capacity flags). Formulas follow the authors' code (github.com/Asap7772/OfflineRlWorkflow,
rlkit-based; docs/trainer.md "Remedies").
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def gaussian_kl_to_standard(mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) per row: 0.5 (||mu||^2 + sum sigma^2 - K - sum log sigma^2)."""
    return 0.5 * (mu.pow(2) + torch.exp(2.0 * log_std) - 1.0 - 2.0 * log_std).sum(-1)


def dr3_term(features: torch.Tensor, next_features: torch.Tensor) -> torch.Tensor:
    """DR3: batch mean of phi(s, a) . stopgrad(phi(s', a')), a' ~ pi(s') (authors' `--dr3_feat`).

    The stop-gradient on the next features is how the authors implement it: only phi(s, a) is
    pushed away from co-adapting with the bootstrapping features.
    """
    return (features.float() * next_features.detach().float()).sum(-1).mean()


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum over parameter tensors of mean |theta| (the authors' `--regularization l1`)."""
    return torch.stack([p.abs().mean() for p in params]).sum()


def sampled_kl(log_pi: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo KL(pi || pi_b) = E_{a~pi}[log pi(a|s) - log pi_b(a|s)], averaged over samples and states."""
    return (log_pi - log_b).mean()


def cql_logsumexp(
    q_rand: torch.Tensor,
    q_cur: torch.Tensor,
    logp_cur: torch.Tensor,
    q_next: torch.Tensor,
    logp_next: torch.Tensor,
    act_dim: int,
) -> torch.Tensor:
    """Per-state importance-sampled logsumexp_a Q(s, a) of CQL(H), as in the CQL code.

    Inputs are (B, N). Random actions are uniform on [-1, 1]^A (log density A log 0.5); policy
    actions are weighted by 1/pi(a|s). Like the reference implementation, log(3N) is not
    subtracted, so the value is shifted up by a constant; the gradient w.r.t. Q is unaffected.
    """
    random_log_density = act_dim * math.log(0.5)
    cat = torch.cat([q_rand - random_log_density, q_cur - logp_cur, q_next - logp_next], dim=1)
    return torch.logsumexp(cat, dim=1)
