"""`offrl-eval checkpoints`: discovery, task resolution, scoring, outputs, errors, and the real trainer path."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pybullet")

from robot_eval.cli import main  # noqa: E402
from robot_eval.collect import collect  # noqa: E402
from robot_eval.dataset import save_dataset  # noqa: E402
from robot_eval.envs.pick_place import TRAY_CENTER  # noqa: E402
from robot_eval.evaluate import (  # noqa: E402
    EvalError,
    evaluate_checkpoints,
    find_checkpoints,
    task_from_run,
    wilson_interval,
)
from robot_eval.tasks import task_spec  # noqa: E402


class ObsScripted:
    """A policy implementing the load_policy contract that sees only the state observation.

    Layout (PickPlace state): ee(3) width closed obj(3) quat(4) obj-ee(3) extents(3).
    """

    step = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        ee, width, closed, obj = obs[0:3], obs[3], obs[4] > 0.5, obs[5:8]
        tray = np.array([TRAY_CENTER[0], TRAY_CENTER[1]])
        holding = closed and width > 0.01 and np.linalg.norm(obj - ee) < 0.04
        in_tray = np.all(np.abs(obj[:2] - tray) < 0.12) and obj[2] < 0.12
        mv = lambda goal: np.clip((goal - ee) / 0.04, -1, 1)  # noqa: E731
        if in_tray and not holding:
            return np.r_[mv(np.r_[ee[:2], 0.3]), -1.0].astype(np.float32)
        if holding:
            if np.linalg.norm(ee[:2] - tray) > 0.03:
                z = 0.2 if ee[2] > 0.12 else ee[2] + 0.04
                return np.r_[mv(np.r_[tray, z]), 1.0].astype(np.float32)
            return np.array([0, 0, 0, -1], np.float32)
        if closed:
            return np.array(
                [0, 0, 0, 1] if width > 0.008 and np.linalg.norm(obj - ee) < 0.03 else [0, 0, 1, -1],
                np.float32,
            )
        if np.linalg.norm(ee[:2] - obj[:2]) > 0.012:
            return np.r_[mv(np.r_[obj[:2], max(ee[2], obj[2] + 0.08)]), -1.0].astype(np.float32)
        if ee[2] - (obj[2] - 0.005) > 0.012:
            return np.r_[mv(np.r_[obj[:2], obj[2] - 0.005]), -1.0].astype(np.float32)
        return np.array([0, 0, 0, 1], np.float32)


class Idle:
    step = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(4, np.float32)


class NanPolicy:
    step = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.full(4, np.nan, np.float32)


def stub_loader(path: str):
    """Stub checkpoints are JSON files naming the behaviour; 'broken' mimics an unreadable checkpoint."""
    kind = json.loads(Path(path).read_text())["kind"]
    if kind == "broken":
        raise ValueError(f"{path}: cannot rebuild the actor")
    return {"scripted": ObsScripted, "idle": Idle, "nan": NanPolicy}[kind]()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pp.npz"
    return save_dataset(path, collect(task_spec("pickplace"), 4, noise=0.1, seed=0))


def make_run(root: Path, dataset: Path, kinds: dict[int, str]) -> Path:
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"dataset": str(dataset), "algo": "cql"}))
    for step, kind in kinds.items():
        (run / "checkpoints" / f"ckpt_{step}.pt").write_text(json.dumps({"kind": kind}))
    (run / "checkpoints" / "ckpt_99.pt.tmp").write_text("partial")  # an interrupted atomic write: ignored
    return run


def test_discovery_and_task_resolution(tmp_path, dataset):
    run = make_run(tmp_path, dataset, {1000: "idle", 200: "scripted", 30000: "idle"})
    assert [s for s, _ in find_checkpoints(run)] == [200, 1000, 30000]
    spec = task_from_run(run)
    assert spec.env_id == "offrl/PickPlace-v0" and spec.image_size == 0
    assert task_from_run(run, "drawer").env_id == "offrl/DrawerGrasp-v0"
    # an image dataset's metadata carries the image size and segment datasets are scored on the full task
    img = save_dataset(
        tmp_path / "img.npz", collect(task_spec("pickplace", image_size=48, segment="place"), 1)
    )
    (run / "config.json").write_text(json.dumps({"dataset": str(img)}))
    spec = task_from_run(run)
    assert spec.image_size == 48 and spec.kwargs.get("segment", "full") == "full"


def test_scores_separate_good_from_bad_checkpoints_and_report_broken_ones(tmp_path, dataset):
    run = make_run(tmp_path, dataset, {100: "idle", 200: "scripted", 300: "broken", 400: "nan"})
    scores, errors = evaluate_checkpoints(
        find_checkpoints(run), task_from_run(run), episodes=4, loader=stub_loader
    )
    by_step = {s.step: s for s in scores}
    assert set(by_step) == {100, 200}
    assert by_step[100].success_rate == 0.0 and by_step[100].return_mean == 0.0
    assert by_step[200].success_rate >= 0.75 and by_step[200].return_mean > 1.0
    assert by_step[200].episodes == 4
    assert len(errors) == 2 and "ckpt_300.pt" in errors[0]
    assert "ckpt_400.pt" in errors[1] and "invalid action" in errors[1]


def test_parallel_workers_give_the_same_scores(tmp_path, dataset):
    run = make_run(tmp_path, dataset, {100: "idle", 200: "scripted"})
    args = (find_checkpoints(run), task_from_run(run))
    serial, _ = evaluate_checkpoints(*args, episodes=2, loader=stub_loader, workers=1)
    parallel, _ = evaluate_checkpoints(*args, episodes=2, loader=stub_loader, workers=2)
    assert [(s.step, s.success_rate, s.return_mean) for s in serial] == [
        (s.step, s.success_rate, s.return_mean) for s in parallel
    ]


def test_cli_writes_csv_and_tensorboard_beside_the_run(tmp_path, dataset, capsys):
    run = make_run(tmp_path, dataset, {100: "idle", 200: "scripted"})
    before = sorted(p.name for p in run.rglob("*"))
    assert (
        main(
            ["checkpoints", str(run), "--episodes", "2", "-q", "--format", "json"], policy_loader=stub_loader
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    out = tmp_path / "run_eval"
    assert res["best_step"] == 200 and Path(res["files"]["csv"]) == out / "eval.csv"
    assert "overlaps 1 other" in res["best_note"]  # 2/2 vs 0/2 episodes is not conclusive
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written into the run folder
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert [r["step"] for r in rows] == ["100", "200"]
    assert list(rows[0])[:5] == ["step", "success_rate", "return_mean", "return_std", "episodes"]
    assert float(rows[0]["success_rate"]) == 0.0 and float(rows[1]["success_rate"]) == 1.0
    from tbparse import SummaryReader

    df = SummaryReader(str(out / "tb")).scalars
    sr = df[df.tag == "eval/success_rate"].sort_values("step")
    assert list(sr.step) == [100, 200] and list(sr.value) == [0.0, 1.0]
    assert set(df.tag) == {"eval/success_rate", "eval/return"}
    # a second evaluation replaces the curves instead of duplicating them
    assert main(["checkpoints", str(run), "--episodes", "2", "-q"], policy_loader=stub_loader) == 0
    assert len(SummaryReader(str(out / "tb")).scalars) == 4


def test_video_is_a_gif(tmp_path, dataset, capsys):
    run = make_run(tmp_path, dataset, {200: "scripted"})
    assert (
        main(
            ["checkpoints", str(run), "-n", "1", "-q", "--video", "--format", "json"],
            policy_loader=stub_loader,
        )
        == 0
    )
    gif = Path(json.loads(capsys.readouterr().out)["files"]["video"])
    from PIL import Image

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames > 10 and im.size == (128, 128)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", [], "does not exist"),
        ("empty", [], "no checkpoints/ folder"),
        ("nockpt", [], "no ckpt_<step>.pt"),
        ("noconfig", [], "no config.json"),
        ("ok", ["--task", "kitchen"], "unknown task"),
        ("ok", ["--out", "INSIDE"], "inside the run folder"),
        ("ok", ["--episodes", "0"], "--episodes"),
        ("allbroken", [], "no checkpoint could be evaluated"),
        ("nodataset", [], "pass --task"),
        ("badconfig", [], "pass --task"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, dataset, capsys, setup, args, message):
    run = tmp_path / "run"
    if setup == "empty":
        run.mkdir()
    elif setup == "nockpt":
        (run / "checkpoints").mkdir(parents=True)
    elif setup in ("ok", "noconfig", "allbroken"):
        make_run(tmp_path, dataset, {100: "broken" if setup == "allbroken" else "idle"})
        if setup == "noconfig":
            (run / "config.json").unlink()
    elif setup in ("nodataset", "badconfig"):
        make_run(tmp_path, dataset, {100: "idle"})
        text = json.dumps({"dataset": str(tmp_path / "gone.npz")}) if setup == "nodataset" else "{not json"
        (run / "config.json").write_text(text)
    args = [str(run / "sub") if a == "INSIDE" else a for a in args]
    assert main(["checkpoints", str(run), "-q", *args], policy_loader=stub_loader) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert any(message in line for line in err) and err[-1].startswith("offrl-eval: error:")


def test_wilson_interval_is_sane():
    assert wilson_interval(0, 10)[0] == 0.0 and 0.2 < wilson_interval(0, 10)[1] < 0.35
    lo, hi = wilson_interval(5, 10)
    assert lo < 0.5 < hi and hi - lo < 0.6
    with pytest.raises(EvalError):
        evaluate_checkpoints([(1, Path("x"))], task_spec("pickplace"), episodes=0, loader=stub_loader)


@pytest.mark.parametrize("algo", ["cql", "brac"])
def test_real_trainer_checkpoints_are_scored(tmp_path, dataset, capsys, algo):
    """The real path: offrl-train on our dataset, then load_policy-backed evaluation of every checkpoint."""
    pytest.importorskip("torch")
    pytest.importorskip("reference_trainer.policy")
    if shutil.which("offrl-train") is None:
        pytest.skip("offrl-train not installed")
    run = tmp_path / "trained"
    train = [
        "offrl-train", "--algo", algo, "--dataset", str(dataset), "--steps", "20", "--ckpt-every", "10",
        "--log-every", "10", "--log-dir", str(run), "--hidden", "16", "--depth", "1", "--batch-size", "16",
        "--bc-steps", "5", "--threads", "1",
    ]  # fmt: skip
    proc = subprocess.run(train, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        main(["checkpoints", str(run), "-n", "2", "-q", "--format", "json"]) == 0
    )  # default loader = load_policy
    payload = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in payload["scores"]] == [10, 20]
    assert all(0.0 <= s["success_rate"] <= 1.0 and s["episodes"] == 2 for s in payload["scores"])
    assert payload["task"] == "offrl/PickPlace-v0" and not payload["errors"]
    assert Path(payload["files"]["csv"]).parent == tmp_path / "trained_eval"


def test_no_best_checkpoint_when_nothing_succeeds(tmp_path, dataset, capsys):
    run = make_run(tmp_path, dataset, {100: "idle", 200: "idle"})
    assert (
        main(["checkpoints", str(run), "-n", "1", "-q", "--format", "json"], policy_loader=stub_loader) == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["best_step"] is None and "no checkpoint succeeded" in res["best_note"]
    assert json.loads((tmp_path / "run_eval" / "eval.json").read_text())["best_step"] is None


def test_eval_event_file_is_read_by_tensorboard_and_the_analyzer(tmp_path):
    """write_outputs' tb/ event file (the shared analyzer.tfevents writer) reads back the same
    scores in tbparse and in the analyzer's reader."""
    from tbparse import SummaryReader

    from analyzer.tfevents import read_event_file
    from robot_eval.evaluate import CheckpointScore, EvalResult, write_outputs

    scores = [CheckpointScore(step, rate, 2.0 * rate, 0.1, 8, 0.0, 1.0) for step, rate in [(10, 0.25), (20, 0.5)]]
    res = EvalResult(str(tmp_path / "run"), str(tmp_path / "run_eval"), "pickplace", {}, 8, 0, scores)
    paths = write_outputs(res)
    files = list(Path(paths["tensorboard"]).iterdir())
    assert len(files) == 1 and files[0].name.endswith(".offrl-eval")
    df = SummaryReader(paths["tensorboard"]).scalars
    got = {t: list(zip(g.step, g.value, strict=True)) for t, g in df.groupby("tag")}
    assert got == {"eval/return": [(10, 0.5), (20, 1.0)], "eval/success_rate": [(10, 0.25), (20, 0.5)]}
    data = read_event_file(files[0])
    assert not data.issues and list(data.scalars["eval/success_rate"].values) == [0.25, 0.5]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["pickplace", "drawer"])
def test_state_observations_are_learnable_by_behaviour_cloning(tmp_path, task):
    """The state observation carries what the scripted expert uses: a BC MLP on 300 noisy (sigma 0.1)
    trajectories succeeds in most episodes (measured 20/20 with 500 trajectories). If this fails, offline RL
    failing on the task says nothing about the workflow."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ds = collect(task_spec(task), 300, noise=0.1, seed=0).arrays
    x, y = torch.tensor(ds["observations"]), torch.tensor(ds["actions"])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 4),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(5000):
        idx = torch.randint(0, len(x), (256,))
        loss = ((torch.tanh(net((x[idx] - mu) / sd)) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    class BC:
        step = 5000

        def __call__(self, obs):
            with torch.no_grad():
                return torch.tanh(net((torch.tensor(obs) - mu) / sd)).numpy()

    scores, errors = evaluate_checkpoints(
        [(5000, Path("bc"))], task_spec(task), episodes=20, loader=lambda p: BC()
    )
    assert not errors and scores[0].success_rate >= 0.8
