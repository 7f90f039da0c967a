"""Make fixtures/real/d3rlpy: REAL logs written by d3rlpy 2.8.1 (CQL), CSV and TensorBoard adapters.

Why real logs: the alias table for d3rlpy (docs/formats.md) was written from d3rlpy's source;
these files check it against what d3rlpy actually writes (file names, headerless rows, the
`metrics/` TensorBoard prefix, global_step = epoch, params.json layout).

Run it in a scratch venv that reuses the system torch (never let pip pull another torch):

    python -m venv --system-site-packages /tmp/d3venv
    /tmp/d3venv/bin/pip install --no-deps d3rlpy==2.8.1 gym==0.26.2 gym_notices tqdm h5py structlog \
        dataclasses-json marshmallow scikit-learn joblib threadpoolctl narwhals
    /tmp/d3venv/bin/python scripts/make_d3rlpy_fixture.py [--out fixtures/real/d3rlpy]

The dataset is synthetic (no downloads): 40 episodes of a 3-D point pushed by 2-D actions, reward
1 inside a goal ball, horizon 25. Training runs 60 epochs x 50 steps so every metric has 60 points:
the analyzer's shape checks need >= 20 finite points (OF001 min_points) and its smoothing and
peak tests are only meaningful well above that. d3rlpy's TensorBoard adapter also writes a
`histograms/<param>_grad` histogram per parameter every epoch (about 150 KB per epoch here);
they carry no scalar the analyzer reads, so the TensorBoard run is written with that one call
disabled (`ScalarsOnlyTensorboardAdapter`) to keep fixtures/real under 3 MB. The CSV adapter's
`*_grad.csv` files (min/max/mean/std per epoch) are small and kept as d3rlpy writes them. Training is seeded but torch CPU kernels may differ across
machines, so TRUTH.json is filled from the files d3rlpy wrote (read back with pandas / tbparse),
never from expectations.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

HORIZON = 25
N_EPISODES = 40
N_EPOCHS = 60
STEPS_PER_EPOCH = 50
N_STEPS = N_EPOCHS * STEPS_PER_EPOCH
SAVE_INTERVAL = 12  # epochs between model_<step>.d3 files (5 files of ~90 KB)
SEED = 7
EXPERIMENT = "cql_tiny"
DISCRETE_EXPERIMENT = "discrete_cql_tiny"
N_DISCRETE_ACTIONS = 4


def _point_episodes(rng: np.random.Generator, act, move) -> tuple[dict[str, np.ndarray], list]:
    """N_EPISODES x HORIZON rollouts of the point: `act(x)` picks the action, `move(x, a)` steps.

    Why one loop: both datasets share start states, the goal-ball reward and the timeouts; only
    the actions and the step differ. Returns the MDPDataset arrays except actions, and the actions.
    """
    obs, acts, rews, terms, touts = [], [], [], [], []
    for _ in range(N_EPISODES):
        x = rng.uniform(-1.0, 1.0, size=3)
        for t in range(HORIZON):
            a = act(x)
            obs.append(x.copy())
            acts.append(a)
            x = move(x, a)
            rews.append(1.0 if np.linalg.norm(x[:2]) < 0.3 else 0.0)
            terms.append(0.0)
            touts.append(1.0 if t == HORIZON - 1 else 0.0)
    arrays = {
        "observations": np.asarray(obs, dtype=np.float32),
        "rewards": np.asarray(rews, dtype=np.float32),
        "terminals": np.asarray(terms, dtype=np.float32),
        "timeouts": np.asarray(touts, dtype=np.float32),
    }
    return arrays, acts


def make_dataset(d3rlpy, rng: np.random.Generator):
    arrays, acts = _point_episodes(
        rng,
        lambda x: np.clip(-0.5 * x[:2] + rng.normal(0.0, 0.3, size=2), -1.0, 1.0),
        lambda x, a: x + 0.2 * np.array([a[0], a[1], -0.1 * x[2]]),
    )
    return d3rlpy.dataset.MDPDataset(actions=np.asarray(acts, dtype=np.float32), **arrays)


def make_discrete_dataset(d3rlpy, rng: np.random.Generator):
    """Same point dynamics, 4 discrete moves (+x, -x, +y, -y)."""
    moves = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])

    def act(x: np.ndarray) -> int:
        greedy = int(np.argmax(moves @ (-x[:2])))
        return greedy if rng.random() < 0.7 else int(rng.integers(N_DISCRETE_ACTIONS))

    arrays, acts = _point_episodes(rng, act, lambda x, a: x + 0.15 * np.array([*moves[a], -0.1 * x[2]]))
    return d3rlpy.dataset.MDPDataset(
        actions=np.asarray(acts, dtype=np.int64),
        action_space=d3rlpy.constants.ActionSpace.DISCRETE,
        action_size=N_DISCRETE_ACTIONS,
        **arrays,
    )


def train_discrete(out: Path) -> Path:
    """DiscreteCQL with the FileAdapter only: checks td_loss / loss / raw conservative_loss naming."""
    import d3rlpy
    from d3rlpy.logging import FileAdapterFactory
    from d3rlpy.metrics import AverageValueEstimationEvaluator, TDErrorEvaluator

    d3rlpy.seed(SEED)
    dataset = make_discrete_dataset(d3rlpy, np.random.default_rng(SEED + 1))
    algo = d3rlpy.algos.DiscreteCQLConfig(
        batch_size=64,
        gamma=0.95,
        alpha=2.0,
        encoder_factory=d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=[32, 32]),
    ).create(device="cpu:0")
    root = out / "csv"
    episodes = dataset.episodes[:10]
    algo.fit(
        dataset,
        n_steps=N_STEPS,
        n_steps_per_epoch=STEPS_PER_EPOCH,
        experiment_name=DISCRETE_EXPERIMENT,
        with_timestamp=True,
        logger_adapter=FileAdapterFactory(root_dir=str(root)),
        show_progress=False,
        save_interval=N_EPOCHS + 1,  # no model files for this run
        evaluators={
            "td_error": TDErrorEvaluator(episodes=episodes),
            "value_scale": AverageValueEstimationEvaluator(episodes=episodes),
        },
    )
    (run,) = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(DISCRETE_EXPERIMENT)]
    return run


def scalars_only_tensorboard(root_dir: str):
    """d3rlpy's TensorboardAdapterFactory minus the per-epoch gradient histograms (size budget).

    Scalars (`metrics/<name>`, global_step = epoch) and the per-epoch add_hparams sub-runs are
    written by d3rlpy's own TensorboardAdapter unchanged; only `watch_model` is skipped.
    """
    from d3rlpy.logging import TensorboardAdapterFactory
    from d3rlpy.logging.tensorboard_adapter import TensorboardAdapter

    class ScalarsOnlyTensorboardAdapter(TensorboardAdapter):
        def watch_model(self, epoch: int, step: int) -> None:
            return None

    class Factory(TensorboardAdapterFactory):
        def create(self, algo, experiment_name: str, n_steps_per_epoch: int):  # noqa: ANN001, ANN201
            return ScalarsOnlyTensorboardAdapter(algo, self._root_dir, experiment_name)

    return Factory(root_dir=root_dir)


def train(out: Path) -> tuple[Path, Path]:
    import d3rlpy
    from d3rlpy.logging import CombineAdapterFactory, FileAdapterFactory
    from d3rlpy.metrics import (
        AverageValueEstimationEvaluator,
        InitialStateValueEstimationEvaluator,
        TDErrorEvaluator,
    )

    d3rlpy.seed(SEED)
    dataset = make_dataset(d3rlpy, np.random.default_rng(SEED))
    enc = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=[32, 32])
    algo = d3rlpy.algos.CQLConfig(
        batch_size=64,
        gamma=0.95,
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        conservative_weight=5.0,
        n_action_samples=4,
        alpha_threshold=10.0,
    ).create(device="cpu:0")
    csv_root = out / "csv"
    tb_root = out / "tensorboard"
    for d in (csv_root, tb_root):
        shutil.rmtree(d, ignore_errors=True)
    episodes = dataset.episodes[:10]
    algo.fit(
        dataset,
        n_steps=N_STEPS,
        n_steps_per_epoch=STEPS_PER_EPOCH,
        experiment_name=EXPERIMENT,
        with_timestamp=True,
        logger_adapter=CombineAdapterFactory(
            [FileAdapterFactory(root_dir=str(csv_root)), scalars_only_tensorboard(str(tb_root))]
        ),
        show_progress=False,
        save_interval=SAVE_INTERVAL,
        evaluators={
            "td_error": TDErrorEvaluator(episodes=episodes),
            "value_scale": AverageValueEstimationEvaluator(episodes=episodes),
            "init_value": InitialStateValueEstimationEvaluator(episodes=episodes),
        },
    )
    (csv_run,) = [p for p in csv_root.iterdir() if p.is_dir() and p.name.startswith(EXPERIMENT + "_")]
    # d3rlpy names the TensorBoard run <experiment>_<timestamp> too, and tensorboardX's add_hparams
    # (called every epoch) writes one nested <same name>/ sub-directory of un-prefixed copies.
    (tb_run,) = [p for p in (tb_root / "runs").iterdir() if p.is_dir()]
    # Keep the model files (one per SAVE_INTERVAL epochs) for checkpoint discovery and picking,
    # unless d3rlpy made them unexpectedly large (size budget).
    for m in csv_run.glob("model_*.d3"):
        if m.stat().st_size > 150_000:
            m.unlink()
    return csv_run, tb_run


def _values(pairs_steps, pairs_values, picks):
    idx = {int(s): float(v) for s, v in zip(pairs_steps, pairs_values, strict=True)}
    return [[int(s), idx[int(s)]] for s in picks if int(s) in idx]


def discrete_truth(out: Path, run: Path) -> dict:
    import pandas as pd

    params = json.loads((run / "params.json").read_text())
    alpha = float(params["config"]["params"]["alpha"])

    def csv(name: str) -> pd.DataFrame:
        return pd.read_csv(run / f"{name}.csv", header=None, names=["epoch", "step", "value"])

    td, loss, cons = csv("td_loss"), csv("loss"), csv("conservative_loss")
    picks = list(td["step"].iloc[[0, len(td) // 2, -1]])
    return {
        "path": str(run.relative_to(out)),
        "framework": "d3rlpy",
        "x_unit": "step",
        "metrics": {
            "td_error": {
                "kind": "logged",
                "sources": ["td_loss"],
                "values": _values(td.step, td.value, picks),
            },
            "critic_loss": {
                "kind": "logged",
                "sources": ["loss"],
                "values": _values(loss.step, loss.value, picks),
            },
            "cql_gap": {
                "kind": "logged",
                "sources": ["conservative_loss"],
                "values": _values(cons.step, cons.value, picks),
            },
            "cql_term": {"kind": "derived", "values": _values(cons.step, alpha * cons.value, picks)},
            "alpha": {"kind": "derived", "values": _values(cons.step, np.full(len(cons), alpha), picks)},
            "q_policy": {"kind": "logged", "sources": ["value_scale"]},
            "q_data": {"kind": "proxy"},
        },
        "absent": ["policy_loss", "temperature", "eval_return"],
        "metadata": {"algorithm": "cql", "gamma": float(params["config"]["params"]["gamma"])},
        "checkpoints": [],
    }


def write_truth(out: Path, csv_run: Path, tb_run: Path, discrete_run: Path) -> None:
    import pandas as pd
    from tbparse import SummaryReader

    params = json.loads((csv_run / "params.json").read_text())
    n_critics = int(params["config"]["params"]["n_critics"])

    def csv(name: str) -> pd.DataFrame:
        return pd.read_csv(csv_run / f"{name}.csv", header=None, names=["epoch", "step", "value"])

    crit, cons, alpha = csv("critic_loss"), csv("conservative_loss"), csv("alpha")
    cp = params["config"]["params"]
    gap = (
        cons.value.to_numpy() / (n_critics * alpha.value.to_numpy() * cp["conservative_weight"])
        + cp["alpha_threshold"]
    )
    picks = list(crit["step"].iloc[[0, len(crit) // 2, -1]])
    td = (crit["value"].to_numpy() - cons["value"].to_numpy()) / n_critics
    meta = {
        "algorithm": "cql",
        "gamma": float(params["config"]["params"]["gamma"]),
        "capacity": {"widths": [32, 32], "depth": 2},
    }
    csv_truth = {
        "path": str(csv_run.relative_to(out)),
        "framework": "d3rlpy",
        "x_unit": "step",
        "metrics": {
            "critic_loss": {
                "kind": "logged",
                "sources": ["critic_loss"],
                "values": _values(crit.step, crit.value, picks),
            },
            "td_error": {
                "kind": "derived",
                "sources": ["critic_loss", "conservative_loss"],
                "values": _values(crit.step, td, picks),
            },
            "cql_term": {
                "kind": "derived",
                "sources": ["conservative_loss"],
                "values": _values(cons.step, cons.value / n_critics, picks),
            },
            "alpha": {"kind": "logged", "values": _values(csv("alpha").step, csv("alpha").value, picks)},
            "temperature": {"kind": "logged", "values": _values(csv("temp").step, csv("temp").value, picks)},
            "policy_loss": {"kind": "logged"},
            "q_policy": {
                "kind": "logged",
                "sources": ["value_scale"],
                "values": _values(csv("value_scale").step, csv("value_scale").value, picks),
            },
            "q_data": {"kind": "proxy", "sources": ["value_scale"]},
            "cql_gap": {"kind": "derived", "values": _values(cons.step, gap, picks)},
        },
        "absent": ["eval_return", "q_target"],
        "metadata": meta,
        "checkpoints": sorted(int(p.stem.split("_")[1]) for p in csv_run.glob("model_*.d3")),
        # one experiment, one run: the TensorBoard folder of the same experiment is read into this run
        "also_reads": [str(tb_run.relative_to(out))],
    }
    top = sorted(tb_run.glob("events.out.tfevents.*"))
    sr = SummaryReader(str(top[0])).scalars
    tb_crit = sr[sr.tag == "metrics/critic_loss"].sort_values("step")
    tb_cons = sr[sr.tag == "metrics/conservative_loss"].sort_values("step")
    tb_picks = list(tb_crit["step"].iloc[[0, len(tb_crit) // 2, -1]])
    tb_td = (tb_crit.value.to_numpy() - tb_cons.value.to_numpy()) / n_critics
    tb_truth = {
        "path": str(tb_run.relative_to(out)),
        "framework": "d3rlpy",
        "x_unit": "epoch",
        "metrics": {
            "critic_loss": {
                "kind": "logged",
                "sources": ["metrics/critic_loss"],
                "values": _values(tb_crit.step, tb_crit.value, tb_picks),
            },
            "td_error": {
                "kind": "derived",
                "sources": ["metrics/critic_loss", "metrics/conservative_loss"],
                "values": _values(tb_crit.step, tb_td, tb_picks),
            },
            "q_policy": {"kind": "logged", "sources": ["metrics/value_scale"]},
            "q_data": {"kind": "proxy"},
            "alpha": {"kind": "logged"},
        },
        "absent": ["eval_return"],
        "metadata": {},
        "note": "d3rlpy's TensorboardAdapter writes no params; global_step is the epoch",
        # a run of its own only when its folder is given alone (else it joins the CSV run above)
        "read_alone": True,
    }
    truth = {
        "source": "real logs written by d3rlpy 2.8.1 CQL via scripts/make_d3rlpy_fixture.py",
        "training": f"{N_EPOCHS} epochs x {STEPS_PER_EPOCH} steps (one logged point per epoch per metric)",
        "omitted": "TensorBoard histograms/<param>_grad (d3rlpy writes them every epoch; disabled for size, "
        "no scalar the analyzer reads). CSV *_grad.csv files are kept as written.",
        "metadata_gaps": "the logs carry no reward range or horizon (d3rlpy does not log them) and the "
        "TensorBoard run no gamma; dataset Q is only the value_scale proxy Q(s, pi(s))",
        "runs": [csv_truth, tb_truth, discrete_truth(out, discrete_run)],
    }
    (out / "TRUTH.json").write_text(json.dumps(truth, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "fixtures" / "real" / "d3rlpy"
    )
    ap.add_argument("--truth-only", action="store_true", help="rewrite TRUTH.json from the existing logs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.truth_only:
        dirs = [p for p in (args.out / "csv").iterdir() if p.is_dir()]
        (csv_run,) = [p for p in dirs if p.name.startswith(EXPERIMENT + "_")]
        (discrete_run,) = [p for p in dirs if p.name.startswith(DISCRETE_EXPERIMENT + "_")]
        (tb_run,) = [p for p in (args.out / "tensorboard" / "runs").iterdir() if p.is_dir()]
    else:
        import torch

        torch.set_num_threads(1)  # tiny networks: threads only add contention on a shared machine
        csv_run, tb_run = train(args.out)
        discrete_run = train_discrete(args.out)
    write_truth(args.out, csv_run, tb_run, discrete_run)
    print(f"wrote {csv_run} and {tb_run}")


if __name__ == "__main__":
    main()
