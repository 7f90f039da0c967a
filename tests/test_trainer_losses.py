"""Unit tests of the trainer's loss pieces on toy cases with known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reference_trainer.config import TrainConfig  # noqa: E402
from reference_trainer.cql import CQLAgent  # noqa: E402
from reference_trainer.data import Batch  # noqa: E402
from reference_trainer.networks import (  # noqa: E402
    random_crop,
    sample_tanh_gaussian,
    tanh_gaussian_log_prob,
)
from reference_trainer.remedies import (  # noqa: E402
    cql_logsumexp,
    dr3_term,
    gaussian_kl_to_standard,
    l1_penalty,
    sampled_kl,
)


def test_cql_logsumexp_on_hand_made_q_table():
    # one state, 1-D actions, N = 2 samples per source; uniform density on [-1, 1] is 0.5
    q_rand = torch.tensor([[1.0, 2.0]])
    q_cur, logp_cur = torch.tensor([[3.0, 0.0]]), torch.tensor([[math.log(0.5), math.log(2.0)]])
    q_next, logp_next = torch.tensor([[-1.0, 1.0]]), torch.tensor([[0.0, 0.0]])
    got = cql_logsumexp(q_rand, q_cur, logp_cur, q_next, logp_next, act_dim=1)
    # terms: Q - log density = 1+log2, 2+log2, 3+log2, 0-log2, -1, 1
    expected = math.log(2 * math.e + 2 * math.e**2 + 2 * math.e**3 + 0.5 + math.exp(-1) + math.e)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the gap of a 2-state table: mean logsumexp - mean dataset Q
    q_data = torch.tensor([0.5, 1.5])
    lse = torch.cat([got, got])
    assert (lse.mean() - q_data.mean()).item() == pytest.approx(expected - 1.0, rel=1e-6)


def test_cql_logsumexp_random_density_scales_with_action_dim():
    zeros = torch.zeros(1, 1)
    big = torch.full((1, 1), -1e9)
    got = cql_logsumexp(zeros, big, zeros, big, zeros, act_dim=3)
    assert got.item() == pytest.approx(3 * math.log(2.0), rel=1e-6)  # 0 - log(0.5^3)


def test_vib_kl_matches_closed_form():
    torch.manual_seed(0)
    mu, log_std = torch.randn(5, 4), 0.3 * torch.randn(5, 4)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, log_std.exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    torch.testing.assert_close(gaussian_kl_to_standard(mu, log_std), ref)
    assert gaussian_kl_to_standard(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max().item() == 0.0


def test_dr3_term_known_value_and_stop_gradient():
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    nxt = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    term = dr3_term(feats, nxt)
    assert term.item() == pytest.approx((1.0 + 4.0) / 2)
    term.backward()
    assert nxt.grad is None  # stop-gradient on phi(s', a')
    torch.testing.assert_close(feats.grad, nxt.detach() / 2)


def test_l1_penalty_is_sum_of_mean_abs():
    params = [torch.tensor([1.0, -3.0]), torch.tensor([[2.0]])]
    assert l1_penalty(params).item() == pytest.approx(2.0 + 2.0)


def test_brac_sampled_kl_matches_analytic_gaussian_kl():
    """KL between tanh-Gaussians equals the KL of the underlying Gaussians (tanh is invertible)."""
    torch.manual_seed(1)
    mean, log_std = torch.tensor([[0.3, -0.2]]), torch.tensor([[-0.5, 0.1]])
    b_mean, b_log_std = torch.tensor([[0.0, 0.1]]), torch.tensor([[-0.2, -0.1]])
    _, logp, u = sample_tanh_gaussian(mean, log_std, n=40_000)
    from reference_trainer.brac import tanh_log_prob_from_u

    logb = tanh_log_prob_from_u(u, b_mean.unsqueeze(1), b_log_std.unsqueeze(1))
    est = sampled_kl(logp, logb).item()
    analytic = (
        torch.distributions.kl_divergence(
            torch.distributions.Normal(mean, log_std.exp()),
            torch.distributions.Normal(b_mean, b_log_std.exp()),
        )
        .sum()
        .item()
    )
    stderr = (logp - logb).std().item() / math.sqrt(40_000)
    assert abs(est - analytic) < 4 * stderr + 1e-3, (est, analytic, stderr)


def test_tanh_gaussian_log_prob_agrees_with_sampler():
    torch.manual_seed(2)
    mean, log_std = torch.randn(64, 3) * 0.5, torch.full((64, 3), -0.7)
    a, logp, _ = sample_tanh_gaussian(mean, log_std)
    torch.testing.assert_close(tanh_gaussian_log_prob(a, mean, log_std), logp, atol=2e-3, rtol=1e-3)
    assert a.abs().max() < 1.0


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    torch.manual_seed(3)
    imgs = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    assert torch.equal(random_crop(imgs, 0), imgs)
    out = random_crop(imgs, 2)
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(imgs.permute(0, 3, 1, 2).float(), (2, 2, 2, 2), mode="replicate")
    padded = padded.permute(0, 2, 3, 1).to(torch.uint8)
    for i in range(4):
        windows = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[i, dy : dy + 8, dx : dx + 8], out[i])
        ]
        assert windows, f"image {i} is not a crop of its padded original"


def _toy_batch(bsz: int = 16, obs_dim: int = 3, act_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(bsz, obs_dim, generator=g)
    return Batch(
        obs=obs,
        actions=torch.rand(bsz, act_dim, generator=g) * 2 - 1,
        rewards=torch.rand(bsz, generator=g),
        next_obs=obs + 0.1,
        dones=torch.zeros(bsz),
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cql_update_logs_consistent_terms(precision):
    """critic_loss = td_error + cql_term and cql_term = alpha * cql_gap when no remedy is on."""
    torch.manual_seed(0)
    cfg = TrainConfig(obs_shape=(3,), act_dim=2, hidden=16, depth=2, n_actions=4, bc_steps=0, gamma=0.9,
                      cql_alpha=2.0, precision=precision)  # fmt: skip
    agent = CQLAgent(cfg, torch.device("cpu"))
    m = dict(zip(agent.metric_names, agent.update(_toy_batch(), 1).tolist(), strict=True))
    assert m["critic_loss"] == pytest.approx(m["td_error"] + m["cql_term"], rel=1e-5, abs=1e-6)
    assert m["cql_term"] == pytest.approx(2.0 * m["cql_gap"], rel=1e-5)
    assert m["alpha"] == pytest.approx(2.0)
    assert "dr3_term" not in m and "vib_term" not in m
    assert all(np.isfinite(v) for v in m.values())


def test_cql_lagrangian_alpha_moves_towards_target_gap():
    """With a target gap far above the actual gap, the Lagrange multiplier must shrink."""
    torch.manual_seed(0)
    cfg = TrainConfig(obs_shape=(3,), act_dim=2, hidden=16, depth=2, n_actions=4, bc_steps=0, gamma=0.9,
                      cql_target_gap=1e3)  # fmt: skip
    agent = CQLAgent(cfg, torch.device("cpu"))
    alphas = [agent.update(_toy_batch(), s + 1)[agent.metric_names.index("alpha")].item() for s in range(20)]
    assert alphas[0] == pytest.approx(1.0)
    assert alphas[-1] < alphas[0]


@pytest.mark.parametrize("backup", ["sample", "mean"])
def test_cql_backup_action_is_a_policy_sample_or_the_policy_mean(backup, monkeypatch):
    torch.manual_seed(0)
    cfg = TrainConfig(obs_shape=(3,), act_dim=2, hidden=16, depth=2, n_actions=4, bc_steps=0, gamma=0.9,
                      backup=backup)  # fmt: skip
    agent = CQLAgent(cfg, torch.device("cpu"))
    batch = _toy_batch()
    seen: list[torch.Tensor] = []
    original = agent.target_q
    monkeypatch.setattr(agent, "target_q", lambda o, a: (seen.append(a.clone()), original(o, a))[1])
    with torch.no_grad():
        mean, _ = agent.actor(batch.next_obs)  # before the update changes the actor
    agent.update(batch, 1)
    is_mean = torch.allclose(seen[0], torch.tanh(mean), atol=1e-6)
    assert is_mean == (backup == "mean")


def test_backup_option_is_validated():
    from reference_trainer.config import ConfigError

    with pytest.raises(ConfigError, match="--backup"):
        TrainConfig(obs_shape=(3,), act_dim=2, backup="max").validate()


def test_brac_logs_the_value_penalty_its_backup_subtracts():
    """value_penalty is what the vp backup takes off gamma x Q'(s', a'): y(vp) - y(pr) = -gamma x value_penalty
    on the same networks and noise, and it is 0 for pr (no penalty in the backup)."""
    from reference_trainer.brac import BRACAgent

    logged = {}
    for variant in ("vp", "pr"):
        torch.manual_seed(0)
        cfg = TrainConfig(algo="brac", obs_shape=(3,), act_dim=2, hidden=16, depth=2, n_actions=4, bc_steps=0,
                          gamma=0.9, brac_variant=variant, brac_beta=3.0)  # fmt: skip
        agent = BRACAgent(cfg, torch.device("cpu"))
        logged[variant] = dict(zip(agent.metric_names, agent.update(_toy_batch(), 1).tolist(), strict=True))
    vp, pr = logged["vp"], logged["pr"]
    assert pr["value_penalty"] == 0.0 and vp["value_penalty"] != 0.0
    assert vp["q_target"] - pr["q_target"] == pytest.approx(-0.9 * vp["value_penalty"], rel=1e-4, abs=1e-5)
