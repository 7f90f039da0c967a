"""Actor and critic networks, image encoders and random-crop augmentation.

Why the critic is written with explicit `F.linear` calls instead of `nn.Sequential`:
- the first layer is split into an observation part and an action part, so the observation
  part is computed once per state and shared by the dataset action and all 3 x N sampled
  actions of the CQL logsumexp (the bulk of the FLOPs is in those sampled actions);
- the same weights can be used detached (the actor loss needs dQ/da, not dQ/dtheta), so actor
  and critic losses share a single backward pass;
- bf16 is applied by hand to the hidden layers only: the output layer and all losses stay in
  fp32 because bf16 rounds Q values of a few hundred by about one unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from reference_trainer.remedies import gaussian_kl_to_standard

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # rlkit's TanhGaussianPolicy bounds
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------- encoders
class ConvEncoder(nn.Module):
    """The paper's image encoder: 3 conv 3x3 layers of 16 channels, 2x2 max-pool after the first two."""

    def __init__(self, image_size: int, channels: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, channels, 3, padding=1),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.Conv2d(channels, channels, 3, padding=1),
            ]
        )
        self.dropout = dropout  # Dropout2d after each conv, as in the authors' code
        side = image_size // 2 // 2
        self.out_dim = channels * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i < 2:
                x = F.max_pool2d(x, 2)
            if self.dropout > 0:
                x = F.dropout2d(x, self.dropout, self.training)
        return x.flatten(1)


class _Residual(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ResNetEncoder(nn.Module):
    """VQ-VAE-style encoder like the authors' `--resnet_enc`: 2 strided convs, then 3 residual blocks.

    Widths are scaled down (64 channels, residual hidden 32, vs the authors' 128/64) so that
    it trains on a CPU; the structure (strided convs + residual stack) is what the remedy adds.
    """

    def __init__(
        self, image_size: int, channels: int = 64, res_hidden: int = 32, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels // 2, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels // 2, channels, 4, stride=2, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_Residual(channels, res_hidden) for _ in range(3)])
        self.dropout = dropout
        side = image_size // 4
        self.out_dim = channels * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.blocks(self.conv3(x)))
        if self.dropout > 0:
            x = F.dropout2d(x, self.dropout, self.training)
        return x.flatten(1)


def make_encoder(kind: str, obs_shape: tuple[int, ...], dropout: float) -> tuple[nn.Module | None, int]:
    """(encoder or None for flat observations, feature size)."""
    if kind == "mlp":
        if len(obs_shape) != 1:
            raise ValueError(
                f"encoder 'mlp' needs flat observations, got shape {obs_shape}; use --encoder conv|resnet"
            )
        return None, int(obs_shape[0])
    if len(obs_shape) != 3:
        raise ValueError(f"encoder {kind!r} needs image observations (H, W, 3), got shape {obs_shape}")
    size = int(obs_shape[0])
    enc: nn.Module = (
        ConvEncoder(size, dropout=dropout) if kind == "conv" else ResNetEncoder(size, dropout=dropout)
    )
    return enc, enc.out_dim  # type: ignore[return-value]


def images_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1]."""
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Random-shift augmentation (pad by replication, crop back), one offset per image; uint8 in and out."""
    if pad <= 0:
        return x
    b, h, w, _ = x.shape
    padded = F.pad(x.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate")
    oy = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=x.device)
    rows = (oy + torch.arange(h, device=x.device).view(1, h, 1)).expand(b, h, w)
    cols = (ox + torch.arange(w, device=x.device).view(1, 1, w)).expand(b, h, w)
    bidx = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, h, w)
    out = padded.permute(0, 2, 3, 1)[bidx, rows, cols]  # (B, H, W, 3)
    return out.to(x.dtype)


# ---------------------------------------------------------------------------- critic
@dataclass
class CriticOut:
    q: torch.Tensor  # (B,) or (B, N), fp32
    features: torch.Tensor  # penultimate features, (B, [N,] hidden)
    vib_kl: torch.Tensor | None  # per-row KL to N(0, I) when the VIB is on


class Critic(nn.Module):
    """Q(s, a): [encoder] -> split first layer -> (depth-1) hidden layers -> [VIB] -> fp32 output.

    `depth` counts hidden layers (3 = the 3x256 MLP). With the VIB, the trunk ends in the mean and
    log-std of a `vib_latent`-dim latent z; a 1-hidden-layer head maps a sample of z to Q.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        act_dim: int,
        hidden: int,
        depth: int,
        encoder: str = "mlp",
        dropout: float = 0.0,
        vib_latent: int = 0,
    ) -> None:
        super().__init__()
        self.encoder, feat_dim = make_encoder(encoder, obs_shape, dropout)
        self.fc_obs = nn.Linear(feat_dim, hidden)
        self.fc_act = nn.Linear(act_dim, hidden, bias=False)
        self.hidden_layers = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth - 1)])
        self.vib_latent = vib_latent
        if vib_latent > 0:
            self.vib_stats = nn.Linear(hidden, 2 * vib_latent)
            self.vib_head = nn.Linear(vib_latent, hidden)
        self.out = nn.Linear(hidden, 1)
        self.dropout = dropout
        self.compute_dtype = torch.float32

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observation part of the first layer (+ bias), computed once per state."""
        x = obs if self.encoder is None else self.encoder(obs)
        w, b = self.fc_obs.weight, self.fc_obs.bias
        if self.compute_dtype != torch.float32:
            return F.linear(x.to(self.compute_dtype), w.to(self.compute_dtype), b.to(self.compute_dtype))
        return F.linear(x, w, b)

    def weights(self) -> list[torch.Tensor]:
        """This step's layer weights after the action part of layer 1, hidden ones cast once to the compute dtype.

        Order: w_act, (w, b) per hidden layer, [VIB stats w, b, head w, b], then the fp32 output w, b.
        Computing them once lets the critic loss and the actor loss share the casts.
        """
        ts: list[torch.Tensor] = [self.fc_act.weight]
        for layer in self.hidden_layers:
            lin = cast(nn.Linear, layer)
            ts += [lin.weight, lin.bias]
        if self.vib_latent > 0:
            ts += [self.vib_stats.weight, self.vib_stats.bias, self.vib_head.weight, self.vib_head.bias]
        if self.compute_dtype != torch.float32:
            ts = [t.to(self.compute_dtype) for t in ts]
        return ts + [self.out.weight, self.out.bias]

    def forward_from(
        self,
        h_obs: torch.Tensor,
        actions: torch.Tensor,
        weights: list[torch.Tensor] | None = None,
        detach: bool = False,
    ) -> CriticOut:
        """Q for `actions` (B, A) or (B, N, A) at states whose encoding is `h_obs` (B, hidden).

        `weights`: from `weights()` (computed here when None). detach=True uses them detached:
        gradients flow to the actions only (actor loss).
        """
        cd = self.compute_dtype
        ws = self.weights() if weights is None else weights
        if detach:
            ws = [w.detach() for w in ws]
        it = iter(ws)
        if actions.dim() == 3:
            h_obs = h_obs.unsqueeze(1)
        x = (h_obs + F.linear(actions.to(cd), next(it))).relu_()  # in place: one tensor less
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        for _ in self.hidden_layers:
            w, b = next(it), next(it)
            x = F.linear(x, w, b).relu_()
            if self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
        kl = None
        if self.vib_latent > 0:
            w_s, b_s, w_h, b_h = next(it), next(it), next(it), next(it)
            stats = F.linear(x, w_s, b_s).float()
            mu, log_std = stats.chunk(2, dim=-1)
            log_std = log_std.clamp(-10.0, 2.0)
            kl = gaussian_kl_to_standard(mu, log_std)
            z = mu + torch.exp(log_std) * torch.randn_like(mu) if self.training else mu
            x = F.relu(F.linear(z.to(cd), w_h, b_h))
        w_out, b_out = next(it), next(it)
        q = F.linear(x.float(), w_out, b_out).squeeze(-1)  # output layer in fp32
        return CriticOut(q=q, features=x, vib_kl=kl)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.encode(obs), actions).q


# ---------------------------------------------------------------------------- actor
def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u)/du| summed over the action dims, in the stable softplus form."""
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(u; mean, exp(log_std)^2) summed over the last dim (diagonal Gaussian)."""
    z = (u - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)


def tanh_gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of dataset actions a in [-1, 1] (clipped slightly inside to keep atanh finite)."""
    a = actions.clamp(-1.0 + 1e-5, 1.0 - 1e-5)
    u = torch.atanh(a)
    return gaussian_log_prob(u, mean, log_std) - tanh_log_det(u)


def sample_tanh_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reparameterised samples: (actions, log_probs, pre-tanh u); n=None -> (B, A), else (B, n, A)."""
    if n is not None:
        mean, log_std = mean.unsqueeze(1), log_std.unsqueeze(1)
        eps = torch.randn(mean.shape[0], n, mean.shape[-1], device=mean.device, dtype=mean.dtype)
    else:
        eps = torch.randn_like(mean)
    u = mean + torch.exp(log_std) * eps
    log_prob = (-0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI).sum(-1) - tanh_log_det(u)
    return torch.tanh(u), log_prob, u


class Actor(nn.Module):
    """Tanh-Gaussian policy: [encoder] -> MLP -> (mean, log_std); deterministic action tanh(mean)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        act_dim: int,
        hidden: int,
        depth: int,
        encoder: str = "mlp",
        log_std_min: float = LOG_STD_MIN,
    ) -> None:
        super().__init__()
        self.log_std_min = log_std_min
        self.encoder, feat_dim = make_encoder(encoder, obs_shape, 0.0)
        layers: list[nn.Module] = []
        width = feat_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs if self.encoder is None else self.encoder(obs)
        mean, log_std = self.head(self.trunk(x)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, LOG_STD_MAX)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.forward(obs)[0])
