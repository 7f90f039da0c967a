"""`offrl-select` on tiny real offrl-train runs: each tier's answer equals the library's, bad input exits 2 naming the
file, and any policy loader (here a plugin wrapping ours) reaches the forward and FQE tiers."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from analyzer.api import analyze  # noqa: E402
from analyzer.selection import DRIFT_TOLERANCE, select, table_from_run  # noqa: E402
from reference_trainer.select import main  # noqa: E402

TINY = ["--steps", "40", "--ckpt-every", "10", "--log-every", "5", "--bc-steps", "10", "--hidden", "16"]
TINY += ["--depth", "1", "--batch-size", "32", "--n-actions", "2"]


def _dataset(path: Path, n_traj: int = 12, horizon: int = 10, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = n_traj * horizon
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[horizon - 1 :: horizon] = True
    np.savez(
        path,
        observations=obs[:-1],
        next_observations=obs[1:],
        actions=act,
        rewards=(act[:, 0] > 0).astype(np.float32),
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        metadata=np.array(json.dumps({"gamma": 0.9, "horizon": horizon, "reward_range": [0, 1]})),
    )


def _train(data: Path, run: Path, *extra: str) -> Path:
    from reference_trainer.cli import main as train_main

    try:
        train_main(["--dataset", str(data), "--log-dir", str(run), *TINY, *extra])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("select")
    data = root / "d.npz"
    _dataset(data)
    signals = _train(data, root / "signals", "--holdout-fraction", "0.2")
    plain = _train(data, root / "plain", "--no-signals")
    return {"data": data, "signals": signals, "plain": plain, "root": root}


def _call(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, err = _call([*args, "--format", "json"], capsys)
    assert code == 0, err
    (run,) = json.loads(out)["runs"]
    return run


def _table(run_dir: Path):
    (res,) = analyze(run_dir).runs
    return table_from_run(res.run)


def test_logs_only_pick_is_the_library_pick(runs, capsys) -> None:
    got = _json([runs["signals"]], capsys)
    want = select(_table(runs["signals"]))
    assert got["method"] == want.method == "drift"
    assert got["pick"] == want.pick and got["ranked"] == want.ranked
    assert got["inputs"] == {"policy_data_distance": "logs"}
    assert set(got["tiers"]) == {"logs"} and got["tiers"]["logs"]["cpu_seconds"] >= 0
    qpeak = _json([runs["signals"], "--method", "qpeak"], capsys)
    assert qpeak["pick"] == select(_table(runs["signals"]), "qpeak").pick
    code, out, _ = _call([runs["signals"], runs["plain"]], capsys)  # the table: one row per run
    assert code == 0 and "signals" in out and "plain" in out and "CPU: logs" in out


def test_forward_tier_merges_the_forward_pass_scores(runs, capsys) -> None:
    from reference_trainer.checkpoint import list_checkpoints
    from reference_trainer.forward import forward_scores

    got = _json([runs["signals"], "--forward"], capsys)
    fwd = forward_scores(list_checkpoints(runs["signals"]), runs["data"])
    want = select(_table(runs["signals"]).merge(fwd.scores, "forward pass", prefix="forward:"))
    assert got["pick"] == want.pick and got["ranked"] == want.ranked
    assert got["inputs"]["forward:policy_data_distance"] == "forward pass"
    tier = got["tiers"]["forward"]
    assert "forward:policy_data_distance" in tier["inputs"] and "forward:v_s0" in tier["inputs"]
    assert tier["data"] == "holdout split" and tier["checkpoints_scored"] == tier["checkpoints"] == 4
    assert tier["dataset"] == str(runs["data"].resolve())


def test_fqe_fits_exactly_k_of_the_ranking(runs, capsys) -> None:
    logs = _json([runs["signals"]], capsys)
    got = _json([runs["signals"], "--fqe", "2", "--fqe-steps", "30"], capsys)
    fqe = got["tiers"]["fqe"]
    assert fqe["fitted"] == 2 and fqe["checkpoints"] == 4 and fqe["fitting_steps"] == 30
    assert fqe["gamma"] == pytest.approx(0.9)
    values = {int(k): v for k, v in fqe["values"].items()}
    assert set(values) == set(logs["ranked"][:2])  # the top 2 of the cheap ranking, nothing else
    assert (
        got["pick"] == max(values, key=values.get)
        and got["shortlist"] == sorted(values, key=values.get)[::-1]
    )
    assert got["method"] == "drift+fqe" and "FQE" in got["reasons"][0]
    assert got["ranked"][2:] == [s for s in logs["ranked"] if s not in values]


def test_run_without_checkpoints(runs, capsys) -> None:
    bare = runs["root"] / "bare"
    shutil.copytree(runs["signals"], bare)
    shutil.rmtree(bare / "checkpoints")
    got = _json([bare], capsys)  # logs only: candidates from the checkpoint interval
    assert got["ranked"] and all(s % 10 == 0 for s in got["ranked"]) and got["pick"] in (10, 20, 30, 40)
    for tier in (["--forward"], ["--fqe", "1"]):
        code, _, err = _call([bare, *tier], capsys)
        assert code == 2 and "ckpt_10.pt" in err and "Traceback" not in err


def test_unreadable_checkpoint_is_skipped_and_named(runs, capsys) -> None:
    broken = runs["root"] / "broken"
    shutil.copytree(runs["signals"], broken)
    (broken / "checkpoints" / "ckpt_20.pt").write_bytes(b"not a checkpoint")
    got = _json([broken, "--forward", "--fqe", "4", "--fqe-steps", "10"], capsys)
    assert any("ckpt_20.pt" in s for s in got["skipped"])
    assert got["tiers"]["forward"]["checkpoints_scored"] == 3
    assert got["tiers"]["fqe"]["fitted"] == 3 and "20" not in got["tiers"]["fqe"]["values"]


@pytest.mark.parametrize(
    "case",
    [
        "missing run",
        "missing dataset flag",
        "dataset moved",
        "method inputs",
        "unknown method",
        "unknown loader",
    ],
)
def test_bad_input_exits_2_naming_the_file(runs, capsys, case: str) -> None:
    if case == "missing run":
        args, expect = [runs["root"] / "nope"], "nope"
    elif case == "missing dataset flag":
        args, expect = [runs["signals"], "--forward", "--dataset", runs["root"] / "gone.npz"], "gone.npz"
    elif case == "dataset moved":
        moved = runs["root"] / "moved"
        if not moved.exists():
            shutil.copytree(runs["signals"], moved)
            cfg = json.loads((moved / "config.json").read_text())
            cfg["dataset"] = str(runs["root"] / "elsewhere.npz")
            (moved / "config.json").write_text(json.dumps(cfg))
        args, expect = [moved, "--fqe", "1"], "elsewhere.npz"
    elif case == "method inputs":  # trained without the selection signals: drift has nothing to read
        args, expect = [runs["plain"], "--method", "drift"], "policy_data_distance"
    elif case == "unknown method":
        args, expect = [runs["signals"], "--method", "best"], "best"
    else:
        args, expect = [runs["signals"], "--forward", "--policy-loader", "nosuch"], "nosuch"
    code, out, err = _call(args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("offrl-select: error:") and expect in err and "Traceback" not in err


def test_method_default_falls_back_when_signals_are_missing(runs, capsys) -> None:
    got = _json([runs["plain"]], capsys)
    assert got["method"] == "qpeak" and got["pick"] == select(_table(runs["plain"])).pick


D3 = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "d3rlpy_policy"
D3_RUN = D3 / "d3rlpy_logs" / "td3_plus_bc"


def _has_d3rlpy() -> bool:
    try:
        import d3rlpy  # noqa: F401
    except ImportError:
        return False
    return True


def test_d3rlpy_run_logs_only_and_install_hint(capsys) -> None:
    got = _json(
        [D3_RUN], capsys
    )  # d3rlpy's CSV logs hold no Q: the default falls back to the last checkpoint
    assert got["method"] == "last" and got["ranked"] == [30, 20, 10]
    if _has_d3rlpy():
        pytest.skip("d3rlpy is installed: the install hint cannot show")
    code, _, err = _call(
        [D3_RUN, "--forward", "--policy-loader", "d3rlpy", "--dataset", D3 / "data.npz"], capsys
    )
    assert code == 2 and "d3rlpy is not installed; pip install d3rlpy" in err


def test_d3rlpy_loader_on_real_model_files(capsys) -> None:
    pytest.importorskip("d3rlpy")
    from reference_trainer.policy_hooks import get_loader

    truth = json.loads((D3 / "ACTIONS.json").read_text())
    loader = get_loader("d3rlpy")
    found = loader.find_checkpoints(D3_RUN)
    assert [s for s, _ in found] == truth["steps"] == [10, 20, 30]
    with np.load(D3 / "data.npz") as npz:
        obs, act = npz["observations"], npz["actions"]
    for step, path in found:
        pi = loader.load(path)(torch.as_tensor(obs[:5]))
        assert pi.numpy() == pytest.approx(np.clip(truth["actions"][str(step)], -1, 1), abs=1e-6)
    got = _json([D3_RUN, "--policy-loader", "d3rlpy", "--forward", "--fqe", "2", "--fqe-steps", "10",
                 "--dataset", D3 / "data.npz"], capsys)  # fmt: skip
    dist = {s: float(((loader.load(p)(torch.as_tensor(obs)).numpy() - act) ** 2).mean()) for s, p in found}
    lowest = min(dist.values())
    close = [
        s for s in sorted(dist, reverse=True) if dist[s] <= (1 + DRIFT_TOLERANCE) * lowest
    ]  # drift, by hand
    assert got["tiers"]["forward"]["inputs"] == ["forward:policy_data_distance"]
    assert set(map(int, got["tiers"]["fqe"]["values"])) == set(
        (close + sorted(set(dist) - set(close), key=dist.get))[:2]
    )
    assert got["tiers"]["fqe"]["fitted"] == 2 and got["tiers"]["fqe"]["checkpoints"] == 3
    assert got["tiers"]["fqe"]["gamma"] == pytest.approx(0.9)  # from d3rlpy's params.json


class WrappedLoader:
    """A third-party loader as a plugin would ship it: ours, under another name (no critic: generic tiers)."""

    name = "wrapped"
    pattern = "checkpoints/ckpt_<step>.pt"

    def find_checkpoints(self, run_dir):
        from reference_trainer.policy_hooks import ReferenceLoader

        return ReferenceLoader().find_checkpoints(run_dir)

    def load(self, path):
        from reference_trainer.policy_hooks import ReferenceLoader

        return ReferenceLoader().load(path)


def test_plugin_loader_reaches_forward_and_fqe(runs, capsys, monkeypatch) -> None:
    from reference_trainer.checkpoint import list_checkpoints
    from reference_trainer.forward import forward_scores

    eps = [
        metadata.EntryPoint("wrapped", f"{__name__}:WrappedLoader", "offrl_workflow.policy_loaders"),
        metadata.EntryPoint("broken", "no_such_module_xyz:Loader", "offrl_workflow.policy_loaders"),
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: eps if group == eps[0].group else [])
    monkeypatch.delenv("OFFRL_NO_PLUGINS", raising=False)
    data = runs["data"]
    args = [runs["signals"], "--policy-loader", "wrapped", "--forward", "--holdout-data", data]
    got = _json([*args, "--fqe", "2", "--fqe-steps", "10"], capsys)
    # the generic forward pass reads the same seeded rows as ours: the same distance from the data
    ref = forward_scores(list_checkpoints(runs["signals"]), data, holdout_dataset=data)
    assert got["tiers"]["forward"]["inputs"] == ["forward:policy_data_distance"]
    pick_before_fqe = select(
        _table(runs["signals"]).merge(
            {s: {"policy_data_distance": v["policy_data_distance"]} for s, v in ref.scores.items()},
            "forward pass",
            prefix="forward:",
        )
    )
    assert set(map(int, got["tiers"]["fqe"]["values"])) == set(pick_before_fqe.ranked[:2])
    assert got["tiers"]["fqe"]["fitted"] == 2
    code, _, err = _call([runs["signals"], "--forward", "--policy-loader", "broken"], capsys)
    assert code == 2 and "failed to load" in err and "no_such_module_xyz" in err
