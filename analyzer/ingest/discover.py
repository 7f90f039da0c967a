"""Run discovery: which directories under a root are runs, and which files belong to each.

Why a separate pass: discovery only looks at names (os.scandir, whose d_type answers is-dir
without a stat per entry), so scanning a tree of thousands of runs costs one directory listing
per directory; reading happens later, per run, possibly in parallel. The grouping rules (one run
per BRAC seed directory, per OfflineRL-Kit seed directory, per TorchRL experiment) are listed in
docs/ingestion.md.
"""

from __future__ import annotations

import contextvars
import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.ingest.d3rlpy_pair import pair_runs
from analyzer.ingest.storage import RemotePath, as_path
from analyzer.model import IngestIssue

EVENT_PREFIX = "events.out.tfevents."
#: Directories whose contents are never logs: checkpoints, media, caches. Skipped while walking.
SKIP_DIRS = frozenset(
    {
        "checkpoints",
        "checkpoint",
        "ckpt",
        "ckpts",
        "model_pkl",
        "models",
        "model",
        "wandb",
        "videos",
        "media",
        "__pycache__",
        "node_modules",
    }
)
#: torch.utils.tensorboard add_hparams' default sub-run name: str(time.time()), e.g. 1796635312.435374
_HPARAMS_SUBRUN = re.compile(r"^\d{9,11}\.\d+$")
#: CSV files that are never training curves even though they sit in run directories.
_IGNORED_CSV = frozenset({"dynamics_training_progress.csv"})


@dataclass
class EventSource:
    path: Path
    prefix: str = ""  # prepended to every tag of this file, e.g. "eval/main/" for BRAC eval dirs
    hparams_only: bool = (
        False  # read only hparams (d3rlpy's <exp>/<exp>/ add_hparams files repeat the scalars)
    )


@dataclass
class CsvSource:
    path: Path
    tag: str | None = None  # series name for single-series files (TorchRL scalars/<key>.csv)


@dataclass
class RunDir:
    """A run as discovery found it: where it is and which log files make it up."""

    path: Path  # run directory, or the log file itself when a single file was given
    id: str
    kind: str = "dir"  # "dir", "file", "brac", "offlinerl_kit", "torchrl", "wandb", "d3rlpy" (CSV+TB pair)
    event_files: list[EventSource] = field(default_factory=list)
    csv_files: list[CsvSource] = field(default_factory=list)
    wandb_files: list[Path] = field(default_factory=list)  # W&B record logs (`run-<id>.wandb`)

    @property
    def config_dir(self) -> Path:
        """Where this run's config files live (a single file's directory)."""
        return self.path.parent if self.kind == "file" else self.path


def is_event_file(name: str) -> bool:
    return name.startswith(EVENT_PREFIX) and not name.endswith((".tmp", ".lock"))


#: W&B: `wandb/run-<time>-<id>/` or `wandb/offline-run-<time>-<id>/`, holding `run-<id>.wandb`
_WANDB_RUN_FILE = re.compile(r"^run-[A-Za-z0-9_.-]+\.wandb$")
_WANDB_RUN_DIR = re.compile(r"^(offline-)?run-")


def is_wandb_run_file(name: str) -> bool:
    return bool(_WANDB_RUN_FILE.match(name))


def _wandb_runs(wandb_dir: Path, root: Path) -> list[RunDir]:
    """Run folders inside a `wandb/` directory (which is otherwise skipped: media, synced copies).

    Only folders with a `run-<id>.wandb` record log count; `latest-run` (a symlink to one of them)
    is not followed, so no run is read twice.
    """
    runs: list[RunDir] = []
    _, dirs, links = _scan_links(wandb_dir)
    for name in dirs:
        if name in links or not _WANDB_RUN_DIR.match(name):
            continue
        run = _wandb_group(wandb_dir / name, _scan(wandb_dir / name)[0], root)
        if run is not None:
            runs.append(run)
    return runs


def _wandb_group(d: Path, files: list[str], root: Path) -> RunDir | None:
    """A W&B run folder: one run made of its `run-<id>.wandb` file(s)."""
    logs = [d / f for f in files if is_wandb_run_file(f)]
    if not logs:
        return None
    run = RunDir(d, _run_id(d, root), "wandb")
    run.wandb_files.extend(logs)
    return run


#: Directories that could not be listed during the current `discover_runs` (None outside it).
_UNREADABLE: contextvars.ContextVar[dict[str, IngestIssue] | None] = contextvars.ContextVar(
    "offrl_unreadable_dirs", default=None
)
#: Errors of a probe for a folder that is not there (a run's optional `tb/`, `<run>_eval/`): silent.
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


def _note_unreadable(path: Path, exc: OSError, what: str = "directory not readable") -> None:
    """Record that `path` could not be read, so that discover_runs reports it instead of skipping it."""
    seen = _UNREADABLE.get()
    if seen is None or exc.errno in _ABSENT:
        return
    reason = exc.strerror or type(exc).__name__
    seen.setdefault(
        str(path),
        IngestIssue(str(path), f"{what} ({reason}); logs inside it were not analysed", "error"),
    )


def _scan_links(path: Path) -> tuple[list[str], list[str], set[str]]:
    """(file names, sub-directory names, which of those are symlinks); hidden entries skipped.

    An unreadable directory is empty (reading never raises); during `discover_runs` it is also
    recorded, and reported as an error-level ingest issue."""
    files: list[str] = []
    dirs: list[str] = []
    links: set[str] = set()
    if isinstance(path, RemotePath):  # a bucket: answered from its listing (storage.py)
        try:
            files, dirs = path.scan()
        except OSError as exc:
            _note_unreadable(path, exc)
        return files, dirs, links
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(entry.name)
                    elif entry.is_symlink() and entry.is_dir():
                        dirs.append(entry.name)
                        links.add(entry.name)
                    elif entry.is_file():
                        files.append(entry.name)
                except OSError as exc:
                    _note_unreadable(path / entry.name, exc, "cannot tell whether this is a directory")
                    continue
    except OSError as exc:
        _note_unreadable(path, exc)
        return [], [], set()
    files.sort()
    dirs.sort()
    return files, dirs, links


def _scan(path: Path) -> tuple[list[str], list[str]]:
    files, dirs, _ = _scan_links(path)
    return files, dirs


def _events_in(path: Path) -> list[Path]:
    files, _ = _scan(path)
    return [path / f for f in files if is_event_file(f)]


def _csvs_under(path: Path) -> list[Path]:
    """All CSV files below `path` (TorchRL writes `scalars/a/b.csv` for a key `a/b`)."""
    out: list[Path] = []
    stack = [path]
    while stack:
        d = stack.pop()
        files, dirs = _scan(d)
        out.extend(d / f for f in files if f.endswith(".csv"))
        stack.extend(d / s for s in reversed(dirs))
    return sorted(out)


def _run_id(path: Path, root: Path) -> str:
    if path == root:
        return root.name or root.resolve().name or str(root)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _group(d: Path, files: list[str], dirs: list[str], root: Path) -> RunDir | None:
    """Recognise multi-directory layouts rooted at `d`; None if `d` is not such a root."""
    sub = set(dirs)
    wandb_run = _wandb_group(d, files, root)
    if wandb_run is not None:
        return wandb_run  # its files/ and tmp/ hold media and synced copies, never separate runs
    record = d / "record"
    if "record" in sub and (record / "policy_training_progress.csv").is_file():
        # OfflineRL-Kit: seed_<s>&timestamp_<t>/record/{policy_training_progress.csv, tb/, hyper_param.json}
        run = RunDir(d, _run_id(d, root), "offlinerl_kit")
        run.csv_files.append(CsvSource(record / "policy_training_progress.csv"))
        for tb in (record / "tb", d / "tb"):
            run.event_files.extend(EventSource(p) for p in _events_in(tb))
        return run
    if "train" in sub and "eval" in sub:
        train_events = _events_in(d / "train")
        if train_events:
            # BRAC (google-research): <seed>/train/ + <seed>/eval/<name>/ -> one run, eval tags prefixed
            run = RunDir(d, _run_id(d, root), "brac")
            run.event_files.extend(EventSource(p) for p in train_events)
            run.event_files.extend(EventSource(p, "eval/") for p in _events_in(d / "eval"))
            _, eval_dirs = _scan(d / "eval")
            for name in eval_dirs:
                run.event_files.extend(EventSource(p, f"eval/{name}/") for p in _events_in(d / "eval" / name))
            run.event_files.extend(EventSource(d / f) for f in files if is_event_file(f))
            return run
    if "scalars" in sub and not any(is_event_file(f) for f in files):
        csvs = _csvs_under(d / "scalars")
        if csvs:
            # TorchRL CSVLogger: <logger>/<exp>/scalars/<key>.csv, headerless step,value
            run = RunDir(d, _run_id(d, root), "torchrl")
            base = d / "scalars"
            run.csv_files.extend(CsvSource(p, p.relative_to(base).with_suffix("").as_posix()) for p in csvs)
            return run
    return None


def single_file_run(path: Path) -> RunDir:
    """A log file given directly: it is the whole run (configs are read from its directory)."""
    run = RunDir(path, path.name, "file")
    if is_event_file(path.name):
        run.event_files.append(EventSource(path))
    elif is_wandb_run_file(path.name):
        run.wandb_files.append(path)
    else:
        run.csv_files.append(CsvSource(path))
    return run


def discover_runs(root: str | Path, issues: list[IngestIssue] | None = None) -> list[RunDir]:
    """Every run under `root`, sorted by id. A file path is a single-file run; a missing path gives [].

    Directories under `root` that cannot be listed (permissions, I/O errors) are appended to
    `issues` as error-level IngestIssues with path and reason: a run inside one is never skipped
    silently (issue 12 item 1).
    """
    token = _UNREADABLE.set({})
    try:
        runs = _discover_runs(as_path(root))
        found = _UNREADABLE.get() or {}
    finally:
        _UNREADABLE.reset(token)
    if issues is not None:
        issues.extend(found[k] for k in sorted(found))
    return runs


def _discover_runs(root: Path) -> list[RunDir]:
    try:
        if isinstance(root, RemotePath):
            root.ensure_listed()  # one recursive listing; every folder below is answered from it
        if root.is_file():
            return [single_file_run(root)]
        if not root.is_dir():
            return []
    except OSError:
        return []
    runs: list[RunDir] = []
    root_real = str(root) if isinstance(root, RemotePath) else os.path.realpath(root)
    followed: set[str] = set()
    # (directory, its real path): real paths are carried down the walk so that a symlinked
    # directory is followed once and a symlink back to an ancestor (a cycle) is not followed at all
    stack: list[tuple[Path, str]] = [(root, root_real)]
    while stack:
        d, real = stack.pop()
        files, dirs, links = _scan_links(d)
        if is_companion_eval(d, files):
            continue  # evaluation of a sibling run: attached to that run below, not a run itself
        grouped = _group(d, files, dirs, root)
        if grouped is not None:
            runs.append(grouped)
            continue  # the group owns its whole subtree
        events = [d / f for f in files if is_event_file(f)]
        csvs = [d / f for f in files if f.endswith(".csv") and f not in _IGNORED_CSV]
        absorbed: set[str] = set()
        if events or csvs:
            run = RunDir(d, _run_id(d, root), "dir")
            run.event_files.extend(EventSource(p) for p in events)
            run.csv_files.extend(CsvSource(p) for p in csvs)
            # add_hparams sub-runs belong to the run that called it: d3rlpy's TensorboardAdapter
            # (name=<exp>) writes <exp>/<exp>/ with the hparams and a copy of the metrics; torch's
            # SummaryWriter.add_hparams without run_name (TorchRL's TensorboardLogger.log_hparams)
            # writes <run>/<time.time()>/ with the hparams only
            hp_dirs = [n for n in dirs if n == d.name or _HPARAMS_SUBRUN.match(n)] if events else []
            for name in hp_dirs:
                hp_files = _events_in(d / name)
                if hp_files:
                    run.event_files.extend(EventSource(p, hparams_only=True) for p in hp_files)
                    absorbed.add(name)
            runs.append(run)
        # TensorBoard semantics: a sub-directory with its own event files is its own run
        children: list[tuple[Path, str]] = []
        for name in dirs:
            if name == "wandb" and name not in links:
                runs.extend(_wandb_runs(d / name, root))
            if name in SKIP_DIRS or name in absorbed:
                continue
            if name not in links:
                children.append((d / name, os.path.join(real, name)))
                continue
            target = os.path.realpath(d / name)
            inside_root = target == root_real or target.startswith(root_real + os.sep)
            is_ancestor = real == target or real.startswith(target + os.sep)
            if inside_root or is_ancestor or target in followed:
                continue  # visited anyway, a cycle, or already followed through another link
            followed.add(target)
            children.append((d / name, target))
        stack.extend(reversed(children))  # depth-first in name order
    runs = pair_runs(runs)  # d3rlpy's CSV and TensorBoard folders of one experiment: one run
    for run in runs:
        attach_companion_eval(run)
    runs.sort(key=lambda r: r.id)
    return runs


#: Companion evaluation (docs/formats.md): an evaluator that scores a run's checkpoints after training
#: writes `<run>_eval/` beside the run, with a manifest `eval.json` and event files anywhere below it
#: (`offrl-eval checkpoints` writes eval.json, eval.csv and tb/). Its event files join the run's own.
COMPANION_SUFFIX = "_eval"
COMPANION_MANIFEST = "eval.json"
#: Deepest folder below `<run>_eval/` searched for event files.
_COMPANION_DEPTH = 4


def is_companion_eval(d: Path, files: list[str]) -> bool:
    """`d` is a companion evaluation folder, or a folder directly inside one: never a training run.

    The walk never enters a companion folder; the parent check is for a scanned path inside one
    (`offrl-analyze run_eval/tb`), which still holds no training run."""
    for folder, names in ((d, files), (d.parent, None)):
        if folder.name.endswith(COMPANION_SUFFIX) and len(folder.name) > len(COMPANION_SUFFIX):
            if COMPANION_MANIFEST in (names if names is not None else _scan(folder)[0]):
                return True
    return False


def companion_eval_dir(run_path: Path) -> Path:
    """Where a run's companion evaluation lives (whether or not it exists)."""
    return run_path.parent / (run_path.name + COMPANION_SUFFIX)


def attach_companion_eval(run: RunDir) -> None:
    """Add the event files of the run's companion evaluation folder to the run."""
    if run.kind == "file":
        return
    comp = companion_eval_dir(run.path)
    files, dirs = _scan(comp)
    if COMPANION_MANIFEST not in files:
        return
    stack = [(comp, files, dirs, 0)]
    while stack:
        d, files, dirs, depth = stack.pop()
        run.event_files.extend(EventSource(d / f) for f in files if is_event_file(f))
        if depth + 1 < _COMPANION_DEPTH:
            stack.extend((d / s, *_scan(d / s), depth + 1) for s in reversed(dirs))


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------

#: Sub-directories of a run searched for checkpoint files (besides the run directory itself).
CHECKPOINT_DIRS: tuple[str, ...] = ("checkpoints", "checkpoint", "ckpt", "model_pkl")
#: `<prefix>_<n>.<ext>`: d3rlpy model_<step>.d3, CORL checkpoint_<t>.pt, rlkit itr_<n>.pkl,
#: JaxCQL/viskit params_<n>.pkl, generic ckpt_<step>.pt / step_<step>.pt.
_CKPT_RE = re.compile(r"^(model|checkpoint|ckpt|step|itr|params)[_-](\d+)\.(d3|pt|pth|pkl|ckpt|npz|msgpack)$")
#: A bare number is a checkpoint only inside a checkpoint directory (rlkit fork: model_pkl/<epoch>.pt).
_BARE_RE = re.compile(r"^(\d+)\.(pt|pth|pkl|ckpt)$")
#: Prefixes whose number counts epochs (rlkit/viskit save one snapshot per epoch).
EPOCH_CKPT_PREFIXES = frozenset({"itr", "params"})


@dataclass
class CheckpointFile:
    step: int
    path: Path
    epoch_unit: bool  # the number counts epochs, not gradient steps


def find_checkpoints(run_dir: Path) -> list[CheckpointFile]:
    """Checkpoint files of a run, sorted by (step, path). Name-based; no file is opened."""
    found: list[CheckpointFile] = []
    files, dirs = _scan(run_dir)
    for name in files:
        m = _CKPT_RE.match(name)
        if m:
            found.append(CheckpointFile(int(m.group(2)), run_dir / name, m.group(1) in EPOCH_CKPT_PREFIXES))
    for sub in CHECKPOINT_DIRS:
        if sub not in dirs:
            continue
        sub_files, _ = _scan(run_dir / sub)
        for name in sub_files:
            m = _CKPT_RE.match(name)
            if m:
                found.append(
                    CheckpointFile(int(m.group(2)), run_dir / sub / name, m.group(1) in EPOCH_CKPT_PREFIXES)
                )
                continue
            b = _BARE_RE.match(name)
            if b:
                found.append(CheckpointFile(int(b.group(1)), run_dir / sub / name, sub == "model_pkl"))
    if not found:
        for side in sibling_checkpoint_dirs(run_dir):
            for name in _scan(side)[0]:
                m = _CKPT_RE.match(name) or _BARE_RE.match(name)
                if m:
                    n = m.group(2) if m.re is _CKPT_RE else m.group(1)
                    epoch = m.re is _CKPT_RE and m.group(1) in EPOCH_CKPT_PREFIXES
                    found.append(CheckpointFile(int(n), side / name, epoch))
            if found:
                break
    found.sort(key=lambda c: (c.step, str(c.path)))
    return found


#: suffixes of a sibling folder that holds a run's checkpoints (`runs/cql_s0/` + `runs/cql_s0_checkpoints/`)
_SIBLING_SUFFIXES = ("_checkpoints", "-checkpoints", "_ckpt", "_ckpts", "-ckpt", "_models")


def sibling_checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Folders outside the run named after it that may hold its checkpoints, nearest first.

    Why: trainers keep logs and weights apart - CORL writes `checkpoints_path/<run name>/`, many scripts
    `<logdir>/<run>` plus `<ckptdir>/<run>` or `<run>_checkpoints/` beside the run. Only folders whose name
    is the run's own name are considered, so another run's checkpoints are never borrowed.
    """
    name, parent = run_dir.name, run_dir.parent
    cands = [parent / f"{name}{s}" for s in _SIBLING_SUFFIXES]
    for up in (parent, parent.parent):
        cands += [up / d / name for d in CHECKPOINT_DIRS]
    out = []
    for c in cands:
        try:
            if c != run_dir and c.is_dir():
                out.append(c)
        except OSError:
            continue
    return out
