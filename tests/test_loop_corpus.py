"""The committed closed-loop corpus (results/closed_loop/trials): export rules on a hand-made trial (fast), and the
committed corpus against the committed round-2 tables (fast: scoring reads JSON; re-analysis reads small logs).

Why: the corpus is how an analyzer change is scored on the simulated runs without retraining; these tests make
sure it stays complete (no weights needed), read-only, and in step with the tables published from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_eval.loop.corpus import MAX_FILE_BYTES, export, export_trial, finished_trials, is_corpus

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "results" / "closed_loop" / "trials"
TABLES = ROOT / "results" / "closed_loop"
RESCORE = (
    "offrl-eval loop all --preset quick --out results/closed_loop/trials --score-only --reanalyze "
    "--results results/closed_loop --figures docs/img"
)


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_trial(out: Path, key: str = "ds_n5__cql__s0__abc") -> Path:
    """A finished trial as `offrl-eval loop` leaves it: logs, rollouts, FQE, weights, and the dataset beside it."""
    data = out / "data"
    data.mkdir(parents=True)
    (data / "ds_n5.npz").write_bytes(b"\0" * 64)
    (data / "ds_n5.json").write_text(json.dumps({"seconds": 1.5, "spec": {}, "success_rate": 1.0}))
    tdir = out / "trials" / key
    (tdir / "run" / "checkpoints").mkdir(parents=True)
    (tdir / "eval" / "tb").mkdir(parents=True)
    for s in (1000, 2000):
        (tdir / "run" / "checkpoints" / f"ckpt_{s}.pt").write_bytes(b"weights")
    (tdir / "run" / "config.json").write_text(json.dumps({"ckpt_every": 1000}))
    (tdir / "run" / "progress.csv").write_text("step,offrl/q_data\n1000,1.0\n2000,2.0\n")
    (tdir / "run" / "events.out.tfevents.1.vm.1.0.1.s0").write_bytes(b"evt")
    (tdir / "eval" / "eval.csv").write_text("step,success_rate\n1000,0.5\n2000,0.0\n")
    (tdir / "eval" / "tb" / "events.out.tfevents.2.vm").write_bytes(b"evt")
    spec = {
        "key": key,
        "seed": 0,
        "episodes": 20,
        "fqe_steps": 5,
        "dataset_path": str((data / "ds_n5.npz").resolve()),
    }
    (tdir / "spec.json").write_text(json.dumps(spec))
    (tdir / "eval.json").write_text(json.dumps({"scores": [], "episodes": 20}))
    (tdir / "fqe_5.json").write_text(json.dumps({"1000": 0.3, "2000": 0.1}))
    result = {"spec": spec, "success": {"1000": 0.5, "2000": 0.0}, "fqe": {"1000": 0.3, "2000": 0.1}}
    (tdir / "result.json").write_text(json.dumps(result))
    (tdir / "result.json.tmp").write_text("half-written")
    return tdir


def test_export_keeps_logs_and_results_drops_weights_and_datasets(tmp_path):
    tdir = _fake_trial(tmp_path / "out")
    corpus = tmp_path / "corpus"
    res = export(tmp_path / "out", corpus, log=lambda m: None)
    assert res["exported"] == [tdir.name] and res["already_exported"] == 0
    got = {p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file()}
    key = tdir.name
    assert got == {
        "data/ds_n5.json",
        *(
            f"{key}/{f}"
            for f in (
                "spec.json",
                "result.json",
                "eval.json",
                "fqe_5.json",
                "run/config.json",
                "run/progress.csv",
                "run/events.out.tfevents.1.vm.1.0.1.s0",
                "eval/eval.csv",
                "eval/tb/events.out.tfevents.2.vm",
            )
        ),
    }
    # the training machine's dataset path becomes the corpus-relative one; nothing else changes
    assert json.loads((corpus / key / "result.json").read_text())["spec"]["dataset_path"] == "data/ds_n5.npz"
    assert json.loads((corpus / key / "spec.json").read_text())["dataset_path"] == "data/ds_n5.npz"
    assert (corpus / key / "fqe_5.json").read_bytes() == (tdir / "fqe_5.json").read_bytes()
    assert is_corpus(corpus) and not is_corpus(tmp_path / "out")
    assert finished_trials(corpus) == [corpus / key] and finished_trials(tmp_path / "out") == [tdir]
    # exporting again is a no-op; a trial with new rollout results replaces the old copy
    assert export_trial(tdir, corpus) is None
    r = json.loads((tdir / "result.json").read_text())
    r["success"]["2000"] = 0.25
    (tdir / "result.json").write_text(json.dumps(r))
    folder, size = export_trial(tdir, corpus)
    assert json.loads((folder / "result.json").read_text())["success"]["2000"] == 0.25 and size > 0
    assert not list(corpus.glob(".*partial"))


def test_export_refuses_unfinished_trials_and_oversized_files(tmp_path):
    tdir = _fake_trial(tmp_path / "out")
    (tdir / "result.json").unlink()
    with pytest.raises(ValueError, match="not a finished trial"):
        export_trial(tdir, tmp_path / "corpus")
    tdir = _fake_trial(tmp_path / "out2")
    (tdir / "run" / "weights.bin").write_bytes(b"\0" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="refusing to export"):
        export_trial(tdir, tmp_path / "corpus")
    assert not (tmp_path / "corpus" / tdir.name).exists()
    with pytest.raises(ValueError, match="other than the work dir"):
        export(tmp_path / "out2", tmp_path / "out2")


def test_run_with_export_exports_each_trial_and_a_later_session_skips_them(tmp_path, monkeypatch):
    """`offrl-eval loop --export CORPUS`: each finished trial lands in CORPUS; a later session with an empty work
    dir trains nothing the corpus already holds, and its tables come from the corpus. The trial process is stood in
    for (training is what is being skipped); everything else is the real orchestration."""
    import robot_eval.loop.run as R

    def fake_collect(data, out_dir, workers=1):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{data.name}.npz").write_bytes(b"\0")
        (out_dir / f"{data.name}.json").write_text(json.dumps({"seconds": 2.0}))
        return out_dir / f"{data.name}.npz", 2.0

    ran: list[str] = []

    def fake_trial(tdir, threads, precision):
        spec = json.loads((tdir / "spec.json").read_text())
        (tdir / "run" / "checkpoints").mkdir(parents=True)
        (tdir / "run" / "checkpoints" / "ckpt_10.pt").write_bytes(b"w")
        (tdir / "run" / "progress.csv").write_text(
            "step,offrl/q_data,offrl/td_error\n10,1.0,0.5\n20,0.5,0.4\n"
        )
        succ = {"10": 0.5, "20": 0.0}
        pick = {"verdict": "overfitting", "pick_step": 10, "peak_step": 10}
        (tdir / "result.json").write_text(
            json.dumps(
                {
                    "spec": spec,
                    "timing": {"train": 1.0},
                    "success": succ,
                    "analysis": pick,
                    "analysis_nodv": pick,
                    "fqe": {"10": 1.0, "20": 0.0},
                    "logs": {"q_data": {"10": 1.0, "20": 0.5}, "td_error": {"10": 0.5, "20": 0.4}},
                }
            )
        )
        ran.append(tdir.name)
        return tdir, 0

    monkeypatch.setattr(R, "collect_dataset", fake_collect)
    monkeypatch.setattr(R, "run_one", fake_trial)
    corpus = tmp_path / "corpus"
    kw = {"log": lambda m: None, "export_to": corpus}
    res = R.run_loop(
        "size", "smoke", tmp_path / "out1", jobs=1, seeds=(0, 1), results_dir=tmp_path / "t1", **kw
    )
    assert res["runs"] == len(ran) == 2 and not res["failed"]
    assert sorted(t.name for t in finished_trials(corpus)) == sorted(ran)
    assert not list(corpus.rglob("*.pt")) and (corpus / "data").is_dir()
    ran.clear()
    res = R.run_loop(
        "size", "smoke", tmp_path / "out2", jobs=1, seeds=(0, 1), results_dir=tmp_path / "t2", **kw
    )
    assert ran == [] and res["runs"] == 2  # nothing retrained; scored from the corpus
    assert (tmp_path / "t2" / "runs.csv").read_text() == (tmp_path / "t1" / "runs.csv").read_text()
