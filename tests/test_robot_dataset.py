"""Scripted datasets: contract arrays and metadata, round trip, MC returns, worker invariance, bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pybullet")

from robot_eval.collect import collect, discounted_returns_to_go  # noqa: E402
from robot_eval.dataset import REQUIRED, DatasetError, load_dataset, save_dataset, trajectory_bounds  # noqa: E402
from robot_eval.tasks import task_spec  # noqa: E402

CONTRACT_META = (
    "task", "gamma", "horizon", "reward_range", "success_rate", "noise", "seed", "n_trajectories",
    "mc_return_mean", "obs_type", "image_size",
)  # fmt: skip


@pytest.fixture(scope="module")
def small_ds():
    return collect(task_spec("pickplace"), 6, noise=0.1, seed=11)


def test_contract_arrays_and_metadata(small_ds, tmp_path):
    path = save_dataset(tmp_path / "d.npz", small_ds)
    raw = np.load(path, allow_pickle=False)
    assert set(REQUIRED) | {"mc_returns", "metadata"} == set(raw.files)
    assert raw["metadata"].shape == () and raw["metadata"].dtype.kind == "U"
    meta = json.loads(str(raw["metadata"]))
    assert all(k in meta for k in CONTRACT_META)
    n = 6 * 40
    assert raw["observations"].shape == (n, 18) and raw["observations"].dtype == np.float32
    assert raw["actions"].dtype == np.float32 and np.abs(raw["actions"]).max() <= 1.0
    assert raw["terminals"].dtype == bool and not raw["terminals"].any()  # no terminal states in this task
    assert raw["timeouts"].sum() == 6 and raw["timeouts"][39::40].all()
    # next_observations continue the trajectory except across a timeout boundary
    inner = ~raw["timeouts"][:-1]
    np.testing.assert_array_equal(raw["next_observations"][:-1][inner], raw["observations"][1:][inner])
    assert meta["task"] == "offrl/PickPlace-v0" and meta["horizon"] == 40 and meta["obs_type"] == "state"
    assert meta["success_rate"] == pytest.approx(
        np.mean([raw["rewards"][i : i + 40].max() > 0 for i in range(0, n, 40)])
    )


def test_round_trip_is_exact(small_ds, tmp_path):
    for compress in (False, True):
        back = load_dataset(save_dataset(tmp_path / f"d{compress}.npz", small_ds, compress=compress))
        assert back.metadata == json.loads(json.dumps(small_ds.metadata))
        for k, v in small_ds.arrays.items():
            np.testing.assert_array_equal(back.arrays[k], v)
            assert back.arrays[k].dtype == v.dtype


def test_mc_returns_are_discounted_return_to_go(small_ds):
    a = small_ds.arrays
    gamma = small_ds.metadata["gamma"]
    for start, end in trajectory_bounds(small_ds):
        r = a["rewards"][start:end]
        expect = [sum(gamma**k * r[t + k] for k in range(len(r) - t)) for t in range(len(r))]
        np.testing.assert_allclose(a["mc_returns"][start:end], expect, rtol=1e-5)
    starts = [s for s, _ in trajectory_bounds(small_ds)]
    assert small_ds.metadata["mc_return_mean"] == pytest.approx(
        float(a["mc_returns"][starts].mean()), rel=1e-6
    )
    np.testing.assert_allclose(
        discounted_returns_to_go(np.array([0, 0, 1, 1], np.float32), 0.5), [0.375, 0.75, 1.5, 1.0]
    )


def test_workers_and_prefix_do_not_change_the_data(small_ds):
    par = collect(task_spec("pickplace"), 6, noise=0.1, seed=11, workers=2)
    prefix = collect(task_spec("pickplace"), 3, noise=0.1, seed=11)
    for k in small_ds.arrays:
        np.testing.assert_array_equal(par.arrays[k], small_ds.arrays[k])
    np.testing.assert_array_equal(prefix.arrays["actions"], small_ds.arrays["actions"][: 3 * 40])


def test_image_dataset_is_uint8(tmp_path):
    ds = collect(task_spec("drawer", image_size=48), 1, noise=0.1, seed=0)
    assert ds.arrays["observations"].shape == (50, 48, 48, 3) and ds.arrays["observations"].dtype == np.uint8
    assert ds.metadata["obs_type"] == "image" and ds.metadata["image_size"] == 48


def test_segments_and_zero_rewards():
    grasp = collect(task_spec("pickplace", segment="grasp"), 3, noise=0.1, seed=0, zero_rewards=True)
    assert grasp.metadata["segment"] == "grasp" and grasp.metadata["rewards_zeroed"]
    assert grasp.arrays["rewards"].max() == 0.0 and grasp.metadata["success_rate"] > 0  # segment success kept
    place = collect(task_spec("pickplace", segment="place"), 3, noise=0.1, seed=0)
    # the place segment starts with the object already between the fingers
    assert place.arrays["observations"][0, 4] == 1.0 and place.metadata["success_rate"] > 0


def test_trainer_reads_our_dataset(small_ds, tmp_path):
    data = pytest.importorskip("reference_trainer.data")
    path = save_dataset(tmp_path / "d.npz", small_ds)
    loader = getattr(data, "load_dataset", None)
    if loader is None:
        pytest.skip("reference_trainer.data.load_dataset not available")
    loaded = loader(path)
    assert loaded.metadata["task"] == "offrl/PickPlace-v0"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "not a readable"), (b"PK\x03\x04garbage", "not a readable"), (None, "missing arrays")],
)
def test_bad_dataset_files_give_clear_errors(tmp_path, content, reason):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, observations=np.zeros((2, 3)))
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=reason) as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_truncated_dataset_file(small_ds, tmp_path):
    path = save_dataset(tmp_path / "d.npz", small_ds)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match="not a readable"):
        load_dataset(path)


def test_collect_cli_json_is_clean(tmp_path):
    out = tmp_path / "c.npz"
    cmd = [
        sys.executable,
        "-m",
        "robot_eval.cli",
        "collect",
        "-n",
        "2",
        "-o",
        str(out),
        "--format",
        "json",
        "-q",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    payload = json.loads(res.stdout)  # nothing but JSON on stdout (no pybullet banner)
    assert payload["metadata"]["n_trajectories"] == 2 and out.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["collect", "--task", "kitchen", "-o", "x.npz"], "unknown task"),
        (["collect", "-n", "0", "-o", "x.npz"], "--trajectories"),
        (["collect", "-o", "x.csv"], "must end in .npz"),
        (["collect", "--task", "drawer", "--n-objects", "5", "-o", "x.npz"], "does not take"),
    ],
)
def test_collect_cli_errors(args, message, capsys, tmp_path, monkeypatch):
    from robot_eval.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_noise_paper_preset(tmp_path, capsys):
    from robot_eval.cli import main
    from robot_eval.scripted import PAPER_SEGMENT_NOISE

    out = tmp_path / "g.npz"
    args = [
        "collect",
        "--segment",
        "grasp",
        "--noise",
        "paper",
        "-n",
        "1",
        "-o",
        str(out),
        "-q",
        "--format",
        "json",
    ]
    assert main(args) == 0
    meta = json.loads(capsys.readouterr().out)["metadata"]
    assert meta["noise"] == PAPER_SEGMENT_NOISE["grasp"] == 0.6 and meta["segment"] == "grasp"
    assert main(["collect", "--noise", "lots", "-o", str(out), "-q"]) == 2
    assert "--noise must be a number or 'paper'" in capsys.readouterr().err


def test_info_cli(small_ds, tmp_path, capsys):
    from robot_eval.cli import main

    path = save_dataset(tmp_path / "d.npz", small_ds)
    assert main(["info", str(path), "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["trajectories"] == 6 and res["arrays"]["observations"]["shape"] == [240, 18]
    (tmp_path / "bad.npz").write_bytes(b"nope")
    assert main(["info", str(tmp_path / "bad.npz")]) == 2
    assert "bad.npz: not a readable .npz" in capsys.readouterr().err


def test_render_writes_task_frames(tmp_path):
    from PIL import Image

    from robot_eval.render import render_task_frames

    paths = render_task_frames(tmp_path, size=64)
    names = sorted(p.name for p in paths)
    assert names[0].startswith("task-") and len(names) == 6
    with Image.open(tmp_path / "task-drawer.png") as im:
        arr = np.asarray(im)
    assert arr.shape == (64, 64, 3) and arr.std() > 10
