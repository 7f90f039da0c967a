"""Export finished closed-loop trials as a committed corpus: logs, config, rollout and FQE results, no weights.

Why: a closed-loop trial costs minutes of training per run, but scoring a changed analyzer needs only what the trial
*logged* (the trainer's progress.csv / event files / config.json), what each checkpoint *did* (eval.json: rollout
success per checkpoint) and the scored baselines (fqe_<steps>.json: FQE's V(s0) per checkpoint). Those are a few
hundred kB per trial, so they can live in git and every analyzer change can be re-scored on them from a fresh clone
(`offrl-eval loop all --score-only --reanalyze --out <corpus>`), without retraining and without checkpoints.

Layout of a corpus (the same files a trial leaves in OUT/trials/<key>/, minus weights and datasets):

  <corpus>/<key>/{spec.json, result.json, eval.json, fqe_<steps>.json, analysis.json, analysis_nodv.json,
                  timing.json, [train_config.yaml,] train.log, trial.log, eval/, run/{config.json, progress.csv,
                  events.out.tfevents.*}}
  <corpus>/data/<dataset>.json   (collection time, dataset spec and success rate; the .npz is not exported)

`dataset_path` in spec.json / result.json is rewritten from the absolute path on the training machine to
`data/<dataset>.npz` (relative to the corpus root), the only edit made to any exported file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Never exported: weights, datasets, pickles (they are large and they are not what scoring reads).
EXCLUDED_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".npz", ".npy", ".pkl", ".d3", ".msgpack", ".tmp"})
EXCLUDED_DIRS = frozenset({"checkpoints", "checkpoint", "ckpt", "__pycache__"})
#: A single exported file above this size is an error (a weight file under another name, a runaway log).
MAX_FILE_BYTES = 2_000_000
#: Files whose JSON carries the training machine's dataset path.
_SPEC_FILES = ("spec.json", "result.json")


def trials_root(out: Path) -> Path:
    """Where the trial folders of OUT are: OUT/trials/ for a work dir written by `offrl-eval loop`, OUT itself for
    an exported corpus (whose trial folders sit at the top level beside data/)."""
    out = Path(out)
    return out / "trials" if (out / "trials").is_dir() else out


def is_corpus(out: Path) -> bool:
    """An exported corpus: no trials/ sub-folder, but trial folders with a result.json at the top level."""
    out = Path(out)
    return not (out / "trials").is_dir() and any(out.glob("*/result.json"))


def finished_trials(out: Path) -> list[Path]:
    """Trial folders of OUT (work dir or corpus) that hold a result.json, sorted by key."""
    return sorted(f.parent for f in trials_root(out).glob("*/result.json"))


def _exported_files(tdir: Path) -> list[Path]:
    """Every file of a trial folder that belongs in the corpus, relative to the folder."""
    out: list[Path] = []
    for root, dirs, files in os.walk(tdir):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        for name in sorted(files):
            p = Path(root) / name
            if p.suffix.lower() in EXCLUDED_SUFFIXES or p.is_symlink():
                continue
            out.append(p.relative_to(tdir))
    return out


def _relative_dataset(obj: dict[str, Any]) -> dict[str, Any]:
    """spec.json / result.json content with `dataset_path` made machine-independent (data/<name>.npz)."""
    spec = obj.get("spec", obj)
    if isinstance(spec, dict) and spec.get("dataset_path"):
        spec["dataset_path"] = f"data/{Path(spec['dataset_path']).name}"
    return obj


def _content(src: Path, rel: Path) -> bytes:
    data = src.read_bytes()
    if rel.name in _SPEC_FILES and len(rel.parts) == 1:
        obj = _relative_dataset(json.loads(data))
        data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
    return data


def _same_trial(a: Path, b: Path) -> bool:
    """Both result.json files describe the same finished trial (spec and rollout results), ignoring paths."""
    try:
        ra, rb = (_relative_dataset(json.loads(p.read_text())) for p in (a, b))
    except (OSError, ValueError):
        return False
    return ra.get("spec") == rb.get("spec") and ra.get("success") == rb.get("success")


def export_trial(tdir: Path, dest_root: Path) -> tuple[Path, int] | None:
    """Copy one finished trial into `dest_root/<key>/`; (folder, bytes written), or None when the corpus already
    holds this trial (same spec and rollout results). The copy is made beside the target and renamed into place,
    so a killed export never leaves a half-written trial that would be scored."""
    src_result = tdir / "result.json"
    if not src_result.exists():
        raise ValueError(f"{tdir}: not a finished trial (no result.json)")
    dest = dest_root / tdir.name
    if (dest / "result.json").exists() and _same_trial(src_result, dest / "result.json"):
        return None
    files = _exported_files(tdir)
    big = [
        f"{r} ({(tdir / r).stat().st_size} bytes)"
        for r in files
        if (tdir / r).stat().st_size > MAX_FILE_BYTES
    ]
    if big:
        raise ValueError(f"{tdir}: refusing to export files over {MAX_FILE_BYTES} bytes: {', '.join(big)}")
    tmp = dest_root / f".{tdir.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    total = 0
    for rel in files:
        data = _content(tdir / rel, rel)
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
        total += len(data)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest, total


def export_datasets(data_dir: Path, dest_root: Path, names: Iterable[str]) -> list[Path]:
    """Copy the collection metadata (<dataset>.json) of the datasets the exported trials used; never the .npz."""
    out = []
    for name in sorted(set(names)):
        src = data_dir / f"{name}.json"
        if src.exists():
            dst = dest_root / "data" / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                shutil.copyfile(src, dst)
                out.append(dst)
    return out


def export(
    out: Path, dest_root: Path, trials: Iterable[Path] | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Export every finished trial of the work dir OUT (or only `trials`) into the corpus `dest_root`."""
    out, dest_root = Path(out), Path(dest_root)
    if dest_root.resolve() == Path(out).resolve():
        raise ValueError(f"{dest_root}: the corpus must be a folder other than the work dir")
    dest_root.mkdir(parents=True, exist_ok=True)
    done = list(trials) if trials is not None else finished_trials(out)
    written, skipped, total = [], 0, 0
    for tdir in done:
        res = export_trial(tdir, dest_root)
        if res is None:
            skipped += 1
            continue
        written.append(res[0].name)
        total += res[1]
        log(f"exported {tdir.name} ({res[1] / 1e3:.0f} kB)")
    names = [Path(json.loads((t / "spec.json").read_text())["dataset_path"]).stem for t in done]
    export_datasets(out / "data", dest_root, names)
    return {"exported": written, "already_exported": skipped, "bytes": total, "corpus": str(dest_root)}


def corpus_bytes(dest_root: Path) -> int:
    """Total size of the files in a corpus (what `git add` would take)."""
    return sum(p.stat().st_size for p in Path(dest_root).rglob("*") if p.is_file())
