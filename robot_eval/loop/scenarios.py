"""The paper's scenarios (Kumar et al., Figs. 3-6) as lists of trials, at two budgets.

A trial is fully described by its dataset spec, its trainer flags and its seed; its folder name is derived from
those, so two scenarios that need the same run (e.g. the 50-trajectory CQL run is both the small end of `size` and
the unregularized arm of `regularize`) share one folder and it is trained once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    """One scripted dataset (robot_eval.collect). Trajectory i is seeded independently of n, so datasets nest."""

    task: str = "pickplace"
    trajectories: int = 500
    noise: float = 0.1
    n_objects: int | None = None
    seed: int = 0

    @property
    def name(self) -> str:
        obj = f"_obj{self.n_objects}" if self.n_objects else ""
        return f"{self.task}_n{self.trajectories}{obj}_noise{self.noise:g}_seed{self.seed}"


@dataclass(frozen=True)
class Preset:
    """Budget knobs. `quick`: < 20 min on 2 cores; `full`: hours (docs/closed_loop.md has time per trial)."""

    name: str
    steps: int
    ckpt_every: int
    log_every: int
    bc_steps: int
    hidden: int
    depth: int
    seeds: tuple[int, ...]
    episodes: int
    fqe_steps: int
    n_actions: int = 10
    batch_size: int = 256
    policy_lr: float = 1e-3
    cql_alpha: float = (
        1.0  # the trainer's default (left implicit in the trainer flags, so run keys stay stable)
    )
    backup: str = "sample"  # offrl-train --backup (CQL TD backup action); docs/trainer.md
    gamma: float | None = None  # offrl-train --gamma; None: the dataset's (0.99)
    sizes: tuple[int, ...] = (50, 500)
    objects: tuple[int, ...] = (1, 35)
    objects_data: int = 200
    overfit_data: int = 50
    holdout_fraction: float = 0.0  # offrl-train --holdout-fraction: the held-out split of the selection signals


PRESETS: dict[str, Preset] = {
    # Round 2 (the results in docs/closed_loop.md): the settings where the paper's signature appears. TD backup from
    # the policy's mean action (the sampled backup of a wide BC policy collapsed the critic in round 1), discount 0.9
    # (effective horizon 10 < the task's 40 steps, so dataset Q converges within the budget; 0.99 was still rising
    # at 8,000 steps), the trainer's CQL alpha 1, width 256 and policy lr 1e-3 (narrower actors or the trainer's
    # 1e-4 never imitate the data within a CPU budget), 16,000 steps with a 4,000-step BC warm start. FQE gets 5,000
    # steps: with 1,000 it was under-trained and ranked an untrained early checkpoint first (docs/closed_loop.md).
    "quick": Preset(
        "quick", steps=16000, ckpt_every=1000, log_every=100, bc_steps=4000, hidden=256, depth=2,
        seeds=(0, 1), episodes=10, fqe_steps=5000, n_actions=4, sizes=(50, 500), objects=(1, 35),
        objects_data=500, cql_alpha=1.0, backup="mean", gamma=0.9,
    ),
    "full": Preset(
        "full", steps=24000, ckpt_every=1000, log_every=100, bc_steps=4000, hidden=256, depth=2,
        seeds=(0, 1, 2), episodes=20, fqe_steps=5000, n_actions=10, sizes=(50, 100, 500, 5000),
        objects=(1, 5, 10, 20, 35), objects_data=500, cql_alpha=1.0, backup="mean", gamma=0.9,
    ),
    # Round 1 (the settings search, docs/closed_loop.md): sampled TD backup, discount 0.99, 8,000 steps. `r1-quick`
    # (alpha 0.1) gave the round-1 tables; `r1-alpha1` keeps the trainer's alpha; `r1-mean` is the first mean-backup
    # probe; `r1-long` asks whether CQL recovers after the post-warm-start collapse in twice the steps.
    "r1-quick": Preset(
        "r1-quick", steps=8000, ckpt_every=500, log_every=100, bc_steps=4000, hidden=256, depth=2,
        seeds=(0, 1), episodes=10, fqe_steps=1000, n_actions=4, sizes=(50, 500), objects=(1, 35),
        objects_data=500, cql_alpha=0.1,
    ),
    "r1-alpha1": Preset(
        "r1-alpha1", steps=8000, ckpt_every=500, log_every=100, bc_steps=4000, hidden=256, depth=2,
        seeds=(0, 1), episodes=10, fqe_steps=1000, n_actions=4, sizes=(50, 500), objects=(1, 35),
        objects_data=500, cql_alpha=1.0,
    ),
    "r1-mean": Preset(
        "r1-mean", steps=8000, ckpt_every=500, log_every=100, bc_steps=4000, hidden=256, depth=2,
        seeds=(0, 1), episodes=10, fqe_steps=1000, n_actions=4, sizes=(50, 500), objects=(1, 35),
        objects_data=500, cql_alpha=0.1, backup="mean",
    ),
    "r1-long": Preset(
        "r1-long", steps=16000, ckpt_every=1000, log_every=100, bc_steps=4000, hidden=256, depth=2,
        seeds=(0, 1), episodes=10, fqe_steps=1000, n_actions=4, sizes=(500,), objects=(1, 35),
        objects_data=500, cql_alpha=0.1,
    ),
    # end-to-end plumbing check (tests, --preset smoke): tiny nets, a few steps; its numbers mean nothing
    "smoke": Preset(
        "smoke", steps=40, ckpt_every=10, log_every=5, bc_steps=10, hidden=16, depth=1, seeds=(0,),
        episodes=2, fqe_steps=20, n_actions=2, batch_size=32, sizes=(5,), objects=(1, 2), objects_data=5,
        overfit_data=5,
    ),
}  # fmt: skip


# `quick` with a 10% held-out split, so that the trainer logs every selection signal (issue 16); its own seeds (4-11),
# so that its runs are new runs, not re-runs of `quick`'s seeds 0-3 (docs/selection.md)
PRESETS["select"] = replace(
    PRESETS["quick"], name="select", holdout_fraction=0.1, seeds=(4, 5, 6, 7, 8, 9, 10, 11)
)

# `quick` at CQL alpha 0.1: how much the workflow's reading depends on alpha (docs/closed_loop.md)
PRESETS["quick-alpha0.1"] = replace(PRESETS["quick"], name="quick-alpha0.1", cql_alpha=0.1)


@dataclass(frozen=True)
class Trial:
    """One training run and everything measured on it."""

    scenario: str
    variant: str  # label within the scenario (x-axis of its figure)
    data: DataSpec
    train: dict[str, Any] = field(default_factory=dict)  # offrl-train flags (without dataset/log-dir/seed)
    seed: int = 0
    episodes: int = 10
    fqe_steps: int = 1000
    pair: str | None = None  # capacity scenario: the variant this one is a higher-capacity version of

    @property
    def key(self) -> str:
        """Folder name: readable prefix + hash of what determines the run (not the scenario/variant labels)."""
        ident = {"data": asdict(self.data), "train": self.train, "seed": self.seed}
        h = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
        algo = self.train.get("algo", "cql")
        return f"{self.data.name}__{algo}_h{self.train.get('hidden')}x{self.train.get('depth')}__s{self.seed}__{h}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key
        return d


def _train(p: Preset, **over: Any) -> dict[str, Any]:
    t = {
        "algo": "cql",
        "steps": p.steps,
        "ckpt-every": p.ckpt_every,
        "log-every": p.log_every,
        "bc-steps": p.bc_steps,
        "hidden": p.hidden,
        "depth": p.depth,
        "n-actions": p.n_actions,
        "batch-size": p.batch_size,
        "policy_lr": p.policy_lr,
    }
    if p.cql_alpha != 1.0:  # the trainer's default is left implicit (keeps run keys stable)
        t["cql-alpha"] = p.cql_alpha
    if p.backup != "sample":  # likewise: the default stays implicit
        t["backup"] = p.backup
    if p.gamma is not None:
        t["gamma"] = p.gamma
    if p.holdout_fraction > 0.0:  # likewise: runs without a held-out split keep their keys
        t["holdout-fraction"] = p.holdout_fraction
    t.update(over)
    return t


def _trials(
    p: Preset, scenario: str, variants: list[tuple[str, DataSpec, dict[str, Any], str | None]]
) -> list[Trial]:
    return [
        Trial(scenario, name, data, train, seed, p.episodes, p.fqe_steps, pair)
        for name, data, train, pair in variants
        for seed in p.seeds
    ]


def size(p: Preset) -> list[Trial]:
    """Fig. 3: dataset size; small data should overfit (dataset Q peaks then falls, success falls)."""
    return _trials(p, "size", [(f"{n} traj", DataSpec(trajectories=n), _train(p), None) for n in p.sizes])


def regularize(p: Preset) -> list[Trial]:
    """Fig. 4: the overfitting case with capacity-decreasing regularizers (VIB, dropout)."""
    d = DataSpec(trajectories=p.overfit_data)
    return _trials(
        p,
        "regularize",
        [
            ("CQL", d, _train(p), None),
            ("CQL+VIB 1e-3", d, _train(p, vib=1e-3), None),
            ("CQL+dropout 0.2", d, _train(p, dropout=0.2), None),
        ],
    )


def objects(p: Preset) -> list[Trial]:
    """Fig. 5: number of object types at a fixed data size; many objects should underfit."""
    return _trials(
        p,
        "objects",
        [
            (
                f"{k} obj",
                DataSpec(trajectories=p.objects_data, n_objects=k if k > 1 else None),
                _train(p),
                None,
            )
            for k in p.objects
        ],
    )


def capacity(p: Preset) -> list[Trial]:
    """Fig. 6: the many-objects case at half width (base) against the preset width (the `objects` run, shared) and
    the preset width + DR3; the base/bigger pair labels underfitting. Half width rather than a wider "bigger" net
    keeps the trial on budget (a 4x wider critic is ~10x slower on one core)."""
    d = DataSpec(trajectories=p.objects_data, n_objects=max(p.objects))
    return _trials(
        p,
        "capacity",
        [
            ("base (half width)", d, _train(p, hidden=p.hidden // 2), None),
            ("bigger", d, _train(p), "base (half width)"),
            ("bigger+DR3 1e-3", d, _train(p, dr3=1e-3), "base (half width)"),
        ],
    )


def brac(p: Preset) -> list[Trial]:
    """BRAC (value penalty) on the overfitting case: the workflow should read brac_divergence in CQL's place."""
    d = DataSpec(trajectories=p.overfit_data)
    return _trials(p, "brac", [("BRAC", d, _train(p, algo="brac"), None)])


SCENARIOS = {"size": size, "regularize": regularize, "objects": objects, "capacity": capacity, "brac": brac}
ORDER = ("size", "regularize", "objects", "capacity", "brac")  # the brief's priority order


def trials_for(scenario: str, preset: str | Preset, seeds: tuple[int, ...] | None = None) -> list[Trial]:
    """All trials of one scenario (or 'all'); `seeds` overrides the preset's seeds."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if seeds is not None:
        p = replace(p, seeds=tuple(seeds))
    names = ORDER if scenario == "all" else (scenario,)
    out: list[Trial] = []
    for name in names:
        if name not in SCENARIOS:
            raise KeyError(f"unknown scenario {name!r} (choose from {', '.join(ORDER)}, all)")
        out.extend(SCENARIOS[name](p))
    return out
