"""Score every checkpoint of a reference-trainer run by rolling it out in the task's environment.

All checkpoints are evaluated on the same episode seeds (common random numbers), so differences between
checkpoints are not differences in initial object placement. Success = at least one rewarded step; return =
undiscounted episode return. The 95% Wilson interval says how far a success rate from few episodes can be trusted.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_eval.collect import EnvCache, mp_context
from robot_eval.dataset import DatasetError
from robot_eval.tasks import TaskError, TaskSpec, task_spec

CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")
CSV_COLUMNS = (
    "step",
    "success_rate",
    "return_mean",
    "return_std",
    "episodes",
    "success_ci_low",
    "success_ci_high",
)


class EvalError(ValueError):
    """A run cannot be evaluated (missing folder, no checkpoints, unknown task...): one-line message, exit 2."""


@dataclass
class CheckpointScore:
    step: int
    success_rate: float
    return_mean: float
    return_std: float
    episodes: int
    success_ci_low: float
    success_ci_high: float
    path: str = ""


@dataclass
class EvalResult:
    run_dir: str
    out_dir: str
    task: str
    env_kwargs: dict[str, Any]
    episodes: int
    seed: int
    scores: list[CheckpointScore] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def best(self) -> CheckpointScore | None:
        """Highest success rate, then highest return, then the later step; None when nothing ever succeeded
        (then there is no evidence to prefer any checkpoint)."""
        if not self.scores or all(s.success_rate == 0 and s.return_mean == 0 for s in self.scores):
            return None
        return max(self.scores, key=lambda s: (s.success_rate, s.return_mean, s.step))

    @property
    def best_note(self) -> str:
        if not self.scores:
            return "no checkpoint could be evaluated"
        if self.best is None:
            return "no checkpoint succeeded in any episode: no best checkpoint"
        b = self.best
        tied = [s.step for s in self.scores if s is not b and s.success_ci_high >= b.success_ci_low]
        if tied:
            return f"step {b.step} is best, but its 95% interval overlaps {len(tied)} other checkpoint(s)"
        return f"step {b.step} is best; its 95% interval overlaps no other checkpoint"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sane at 0/n and n/n, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def find_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """`RUN_DIR/checkpoints/ckpt_<step>.pt`, sorted by step (temp files and other names are ignored)."""
    if not run_dir.is_dir():
        raise EvalError(f"{run_dir}: run directory does not exist")
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        raise EvalError(f"{run_dir}: no checkpoints/ folder (expected {folder}/ckpt_<step>.pt)")
    found = []
    for p in folder.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    if not found:
        raise EvalError(f"{folder}: no ckpt_<step>.pt files")
    return sorted(found)


def read_dataset_metadata(path: Path) -> dict[str, Any]:
    """Only the `metadata` entry of a dataset (npz members load lazily, so this is cheap for big files)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "metadata" not in npz.files:
                return {}
            meta = json.loads(str(npz["metadata"]))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read dataset metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: metadata is not a JSON object")
    return meta


def task_from_run(run_dir: Path, task: str | None = None, **overrides: Any) -> TaskSpec:
    """The environment to evaluate on: `--task` if given, else config.json -> dataset -> metadata `task`.

    Segment datasets (grasp-only, place-only) are evaluated on the full task, which is what they are for.
    """
    kwargs: dict[str, Any] = {}
    if task is None:
        cfg_path = run_dir / "config.json"
        if not cfg_path.is_file():
            raise EvalError(f"{run_dir}: no config.json to find the dataset's task; pass --task")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise EvalError(f"{cfg_path}: unreadable ({exc}); pass --task") from None
        ds = cfg.get("dataset") if isinstance(cfg, dict) else None
        if not ds:
            raise EvalError(f"{cfg_path}: no 'dataset' entry; pass --task")
        ds_path = Path(ds)
        if not ds_path.is_absolute() and not ds_path.exists():
            ds_path = run_dir / ds_path
        try:
            meta = read_dataset_metadata(ds_path)
        except DatasetError as exc:
            raise EvalError(f"{exc}; pass --task") from None
        if "task" not in meta:
            raise EvalError(f"{ds_path}: dataset metadata has no 'task'; pass --task")
        task = str(meta["task"])
        kwargs = dict(meta.get("env_kwargs") or {})
        if "image_size" in meta:
            kwargs["image_size"] = int(meta["image_size"])
    kwargs.pop("segment", None)
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return task_spec(task, **kwargs)
    except TaskError as exc:
        raise EvalError(str(exc)) from None


def episode_seeds(seed: int, episodes: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence([seed, 7919]).spawn(episodes)]


def run_episode(
    env, policy: Callable[[np.ndarray], np.ndarray], seed: int, frames: list | None = None
) -> float:
    """Undiscounted return of one deterministic-policy episode; `frames` collects renders if given."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    if frames is not None:
        frames.append(env.render())
    while not done:
        a = np.asarray(policy(obs), dtype=np.float32).reshape(-1)
        if a.shape != env.action_space.shape or not np.all(np.isfinite(a)):
            raise ValueError(
                f"policy returned an invalid action (shape {a.shape}, finite={np.all(np.isfinite(a))})"
            )
        obs, r, term, trunc, _ = env.step(a)
        total += float(r)
        done = term or trunc
        if frames is not None:
            frames.append(env.render())
    return total


def default_loader(path: str):
    """reference_trainer's `load_policy` (imported lazily: torch is only needed here)."""
    try:
        from reference_trainer.policy import load_policy
    except ImportError as exc:
        raise EvalError(
            f"cannot import reference_trainer.policy.load_policy ({exc}); install the 'trainer' extra"
        ) from None
    if _IN_WORKER:
        import torch

        torch.set_num_threads(1)
    return load_policy(path, device="cpu")


_ENV_CACHE = EnvCache()
_POLICY_CACHE: dict[str, Any] = {}


def _eval_chunk(
    spec: TaskSpec, ckpt: str, seeds: Sequence[int], loader: Callable[[str], Any]
) -> tuple[str, list[float], str | None]:
    """Returns (checkpoint, episode returns, error message or None). Never raises for a bad checkpoint."""
    try:
        if ckpt not in _POLICY_CACHE:
            _POLICY_CACHE.clear()
            _POLICY_CACHE[ckpt] = loader(ckpt)
        policy = _POLICY_CACHE[ckpt]
        env = _ENV_CACHE.get(spec)
        return ckpt, [run_episode(env, policy, s) for s in seeds], None
    except EvalError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per checkpoint, the others are still scored
        return ckpt, [], error_line(ckpt, exc)


def error_line(ckpt: str, exc: BaseException) -> str:
    """`<checkpoint>: <reason>` on one line, the path once (loaders already name it), at most ~300 chars."""
    text = " ".join(str(exc).split())
    if text.startswith(f"{ckpt}: "):
        text = text[len(ckpt) + 2 :]
    elif not isinstance(exc, ValueError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"{ckpt}: {text[:300]}"


_IN_WORKER = False


def _worker_init() -> None:
    """W workers x torch's default thread count would oversubscribe the cores: one thread each."""
    global _IN_WORKER
    _IN_WORKER = True
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def score(step: int, path: str, returns: list[float]) -> CheckpointScore:
    r = np.asarray(returns, dtype=np.float64)
    wins = int((r > 0).sum())
    lo, hi = wilson_interval(wins, len(r))
    return CheckpointScore(step, wins / len(r), float(r.mean()), float(r.std()), len(r), lo, hi, path)


def evaluate_checkpoints(
    checkpoints: list[tuple[int, Path]],
    spec: TaskSpec,
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    loader: Callable[[str], Any] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[CheckpointScore], list[str]]:
    """Roll out each checkpoint for `episodes` episodes; returns scores (sorted by step) and error lines.

    `loader(path) -> policy` defaults to reference_trainer's `load_policy`.
    """
    loader = loader or default_loader
    if episodes < 1:
        raise EvalError(f"--episodes must be >= 1, got {episodes}")
    seeds = episode_seeds(seed, episodes)
    by_path = {str(p): step for step, p in checkpoints}
    # split episodes so that every worker has work even with few checkpoints
    splits = max(1, min(episodes, math.ceil(max(1, workers) / len(checkpoints))))
    size = math.ceil(episodes / splits)
    jobs = [(str(p), seeds[i : i + size]) for _, p in checkpoints for i in range(0, episodes, size)]
    returns: dict[str, list[float]] = {k: [] for k in by_path}
    errors: dict[str, str] = {}
    _POLICY_CACHE.clear()  # a checkpoint path may have been rewritten (or re-used) since the last call
    if workers <= 1:
        for c, s in jobs:
            ckpt, rets, err = _eval_chunk(spec, c, s, loader)
            _merge(ckpt, rets, err, returns, errors, on_progress, len(s))
    else:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=mp_context(), initializer=_worker_init
        ) as pool:
            futures = [pool.submit(_eval_chunk, spec, c, s, loader) for c, s in jobs]
            for (_, s), fut in zip(jobs, futures, strict=True):
                ckpt, rets, err = fut.result()
                _merge(ckpt, rets, err, returns, errors, on_progress, len(s))
    scores = [score(by_path[c], c, r) for c, r in returns.items() if c not in errors and r]
    return sorted(scores, key=lambda s: s.step), [errors[c] for c in sorted(errors, key=lambda c: by_path[c])]


def _merge(ckpt, rets, err, returns, errors, on_progress, n_episodes: int) -> None:
    if err is not None:
        errors.setdefault(ckpt, err)
    else:
        returns[ckpt].extend(rets)
    if on_progress:
        on_progress(n_episodes)


def default_out_dir(run_dir: Path, into_run: bool) -> Path:
    """`<RUN_DIR>_eval/` beside the run, or `<RUN_DIR>/eval/` only when explicitly asked (--into-run)."""
    return run_dir / "eval" if into_run else run_dir.parent / f"{run_dir.name}_eval"


def check_out_dir(run_dir: Path, out_dir: Path, into_run: bool) -> None:
    """Never write into the run's log folder unless asked: the analyzer may be reading it."""
    run, out = run_dir.resolve(), out_dir.resolve()
    if not into_run and (out == run or run in out.parents):
        raise EvalError(f"{out_dir}: inside the run folder {run_dir}; pass --into-run to allow writing there")


def write_outputs(result: EvalResult) -> dict[str, str]:
    """eval.csv, eval.json and a TensorBoard event file (eval/success_rate, eval/return) in `out_dir`."""
    from analyzer.tfevents import EventWriter

    out = Path(result.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "eval.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for s in result.scores:
            w.writerow(
                [
                    s.step,
                    f"{s.success_rate:.6g}",
                    f"{s.return_mean:.6g}",
                    f"{s.return_std:.6g}",
                    s.episodes,
                    f"{s.success_ci_low:.4f}",
                    f"{s.success_ci_high:.4f}",
                ]
            )
    tmp.replace(csv_path)
    json_path = out / "eval.json"
    best = result.best
    payload = asdict(result) | {"best_step": best.step if best else None, "best_note": result.best_note}
    json_path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tb_dir = out / "tb"
    # re-evaluating into the same output folder replaces, rather than duplicates, the curves
    for old in tb_dir.glob("events.out.tfevents.*") if tb_dir.is_dir() else ():
        old.unlink()
    with EventWriter(tb_dir, filename_suffix=".offrl-eval") as writer:
        for s in result.scores:
            writer.add_scalar("eval/success_rate", float(s.success_rate), int(s.step))
            writer.add_scalar("eval/return", float(s.return_mean), int(s.step))
    return {"csv": str(csv_path), "json": str(json_path), "tensorboard": str(tb_dir)}


def save_rollout_gif(
    spec: TaskSpec, ckpt: str, seed: int, path: Path, loader: Callable[[str], Any] | None = None
) -> Path:
    """A 128x128 GIF of one rollout (for a person to look at), independent of the policy's image size."""
    from PIL import Image

    env = spec.make(render_mode="rgb_array")
    try:
        frames: list[np.ndarray] = []
        run_episode(env, (loader or default_loader)(ckpt), seed, frames)
    finally:
        env.close()
    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=80, loop=0)
    return path
