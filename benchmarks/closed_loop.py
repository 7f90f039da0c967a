"""Closed-loop benchmarks: where a trial's wall time goes, and FQE's batched ensemble vs one fit per checkpoint.

    python benchmarks/closed_loop.py timings OUT          # per-phase wall time of the finished trials in OUT
    python benchmarks/closed_loop.py fqe RUN_DIR DATA.npz [--steps 300] [--k 8] [--rounds 3]
    python benchmarks/closed_loop.py bc DATA.npz --hidden 256 --steps 6000 [--lr 1e-3] [--normalize]
    python benchmarks/closed_loop.py readings OUT [NAME=RULES.yaml ...] [--seeds 2,3]

OUT is a loop work dir or the committed corpus of its trials (results/closed_loop/trials: logs, rollout and FQE
results, no weights), so `readings` and `timings` run from a fresh clone.

`readings` scores the analyzer under several rules files on the finished trials in OUT (logs only, as the loop does;
`defaults` is always included): regret@1 / fraction of best / gain over last with bootstrap CIs, and overfitting
verdicts against the rollout labels. It is how a change to the analyzer is checked against the closed-loop ground
truth, and on which seeds (`--seeds`: e.g. only runs that were not looked at while making the change).

`bc` is the settings search's first question: can the trainer's actor (tanh-Gaussian MLP, the loss of the CQL warm
start without the entropy term) imitate the data at all at a given width / step count / learning rate? It trains
that actor by maximum likelihood and rolls out its deterministic action on 10 episodes.

The FQE comparison fits the same K checkpoints both ways in the same process (best of `rounds`), so the ratio is
measured under the same load; absolute seconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# benchmarks/robot_eval.py would shadow the robot_eval package when this file runs as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def timings(out: Path) -> dict:
    from robot_eval.loop.corpus import finished_trials

    rows = []
    for tdir in finished_trials(out):
        r = json.loads((tdir / "result.json").read_text())
        rows.append({"key": r["spec"]["key"], **{k: float(v) for k, v in r["timing"].items()}})
    if not rows:
        raise SystemExit(f"{out}: no finished trials")
    phases = ("train", "evaluate", "analyze", "fqe")
    mean = {p: statistics.mean(r.get(p, 0.0) for r in rows) for p in phases}
    total = sum(mean.values())
    return {
        "trials": len(rows),
        "mean_s": mean,
        "share": {p: mean[p] / total for p in phases},
        "total_s": total,
    }


def fqe(run_dir: Path, dataset: Path, steps: int, k: int, rounds: int) -> dict:
    from reference_trainer.fqe import FQEConfig, fit_fqe
    from robot_eval.evaluate import find_checkpoints

    ckpts = [p for _, p in find_checkpoints(run_dir)][:k]
    cfg = FQEConfig(steps=steps)
    ens, sep = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fit_fqe(ckpts, dataset, cfg)
        ens.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for c in ckpts:
            fit_fqe([c], dataset, cfg)
        sep.append(time.perf_counter() - t0)
    return {
        "checkpoints": len(ckpts),
        "steps": steps,
        "ensemble_s": min(ens),
        "separate_s": min(sep),
        "speedup": min(sep) / min(ens),
    }


def bc(
    dataset: Path, hidden: int, depth: int, steps: int, lr: float, normalize: bool, episodes: int, seed: int
) -> dict:
    import numpy as np
    import torch

    from reference_trainer.networks import Actor, tanh_gaussian_log_prob
    from robot_eval.evaluate import evaluate_checkpoints
    from robot_eval.tasks import task_spec

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    with np.load(dataset) as d:
        x = torch.tensor(d["observations"])
        y = torch.tensor(d["actions"]).clamp(-0.999, 0.999)
        meta = json.loads(str(d["metadata"])) if "metadata" in d else {}
    # roll out in the dataset's own task: a 35-object dataset is scored on 35 object types, not on the default 1
    env = {k: v for k, v in meta.get("env_kwargs", {}).items() if k in ("n_objects", "segment")}
    mu, sd = (x.mean(0), x.std(0) + 1e-6) if normalize else (torch.zeros(x.shape[1]), torch.ones(x.shape[1]))
    actor = Actor((x.shape[1],), y.shape[1], hidden, depth)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    t0 = time.perf_counter()
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(x), (256,))
        mean, log_std = actor((x[idx] - mu) / sd)
        loss = -tanh_gaussian_log_prob(y[idx], mean, log_std).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0

    def policy(obs):
        with torch.no_grad():
            return actor.act(((torch.as_tensor(obs) - mu) / sd)[None])[0].numpy()

    scores, _ = evaluate_checkpoints(
        [(steps, Path("bc"))], task_spec("pickplace", **env), episodes, loader=lambda p: policy
    )
    return {"hidden": hidden, "depth": depth, "steps": steps, "lr": lr, "normalize": normalize,
            "train_s": train_s, "success_rate": scores[0].success_rate, "episodes": episodes,
            "env": env, "transitions": len(x), "data_success_rate": meta.get("success_rate"),
            "final_nll": float(loss.detach())}  # fmt: skip


def readings(out: Path, rules: list[str], seeds: set[int] | None) -> str:
    from analyzer import analyze
    from analyzer.config import default_config, load_config
    from robot_eval.loop import score as S
    from robot_eval.loop.corpus import finished_trials
    from robot_eval.loop.report import _evaluated, membership

    configs = {"defaults": default_config()}
    for item in rules:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"readings: expected NAME=RULES.yaml, got {item!r}")
        configs[name] = load_config(path)
    member = membership()
    runs = []
    for tdir in finished_trials(out):
        r = json.loads((tdir / "result.json").read_text())
        if seeds is not None and int(r["spec"]["seed"]) not in seeds:
            continue
        success = {int(k): float(v) for k, v in r["success"].items()}
        scen = sorted({m[0] for m in member.get(r["spec"]["key"], [(r["spec"]["scenario"], "", None)])})
        runs.append((tdir / "run", success, scen, S.label_overfitting(success)))
    if not runs:
        raise SystemExit(f"{out}: no finished trials (for these seeds)")
    lines = [
        f"{len(runs)} runs in {out}" + (f", seeds {sorted(seeds)}" if seeds else ""),
        "",
        "| reading | scope | runs | regret@1 | fraction of best | gain over last | verdicts | overfitting TP/FP/FN/TN |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cfg in configs.items():
        scored = []
        for run_dir, success, scen, label in runs:
            res = analyze([run_dir], rules=cfg).runs[0]
            pick = _evaluated(res.checkpoint.step if res.checkpoint else None, success)
            scored.append((S.score_pick(success, pick), res.verdict, scen, label))
        scopes = {"all": scored}
        for sc in sorted({x for _, _, scen, _ in scored for x in scen}):
            scopes[sc] = [x for x in scored if sc in x[2]]
        for scope, xs in scopes.items():
            cis = [
                S.bootstrap_ci([getattr(p, m) for p, *_ in xs], seed=0)
                for m in ("regret", "fraction_of_best")
            ]
            gain = S.bootstrap_ci([p.gain_over_last for p, *_ in xs], seed=0)
            verdicts = ", ".join(f"{v} {sum(x[1] == v for x in xs)}" for v in sorted({x[1] for x in xs}))
            lab = [(x[1] == "overfitting", bool(x[3])) for x in xs if x[3] is not None]
            conf = "/".join(
                str(sum(c(h, t) for h, t in lab))
                for c in (
                    lambda h, t: h and t,
                    lambda h, t: h and not t,
                    lambda h, t: t and not h,
                    lambda h, t: not h and not t,
                )
            )
            lines.append(
                f"| {name} | {scope} | {len(xs)} | {cis[0].fmt()} (n={cis[0].n}) | {cis[1].fmt(pct=True)} "
                f"(n={cis[1].n}) | {gain.fmt()} | {verdicts} | {conf} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("timings")
    t.add_argument("out", type=Path)
    f = sub.add_parser("fqe")
    f.add_argument("run_dir", type=Path)
    f.add_argument("dataset", type=Path)
    f.add_argument("--steps", type=int, default=300)
    f.add_argument("--k", type=int, default=8)
    f.add_argument("--rounds", type=int, default=3)
    b = sub.add_parser("bc")
    b.add_argument("dataset", type=Path)
    b.add_argument("--hidden", type=int, default=256)
    b.add_argument("--depth", type=int, default=2)
    b.add_argument("--steps", type=int, default=6000)
    b.add_argument("--lr", type=float, default=1e-3)
    b.add_argument("--normalize", action="store_true")
    b.add_argument("--episodes", type=int, default=10)
    b.add_argument("--seed", type=int, default=0)
    rd = sub.add_parser("readings")
    rd.add_argument("out", type=Path)
    rd.add_argument("rules", nargs="*", help="NAME=RULES.yaml (defaults are always scored)")
    rd.add_argument("--seeds", default=None, help="only trials with these training seeds, e.g. 2,3")
    a = p.parse_args(argv)
    if a.cmd == "readings":
        print(readings(a.out, a.rules, {int(x) for x in a.seeds.split(",")} if a.seeds else None))
        return 0
    if a.cmd == "timings":
        res = timings(a.out)
    elif a.cmd == "fqe":
        res = fqe(a.run_dir, a.dataset, a.steps, a.k, a.rounds)
    else:
        res = bc(a.dataset, a.hidden, a.depth, a.steps, a.lr, a.normalize, a.episodes, a.seed)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
