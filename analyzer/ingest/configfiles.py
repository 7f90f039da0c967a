"""Config and metadata files next to a run: params.json, variant.json, config.json/.yaml, hparams.

Why flatten: frameworks nest hyperparameters differently (`trainer_kwargs.discount` in rlkit,
`gamma` in d3rlpy's params.json, `config.discount` elsewhere); alias profiles look keys up by
dotted path, and every key remembers its file so a verdict can cite where gamma came from.
Files are read, never written; broken files become issues.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analyzer.model import IngestIssue

#: Config files read from the run directory, in precedence order (first file wins a key).
CONFIG_NAMES: tuple[str, ...] = (
    "config.json",  # the reference trainer
    "params.json",  # d3rlpy
    "variant.json",  # rlkit, COG, JaxCQL, viskit
    "config.yaml",  # CORL (pyrallis)
    "config.yml",
    "hyper_param.json",  # OfflineRL-Kit (record/hyper_param.json)
)
#: Config keys whose value may point at a dataset; a `metadata.json` next to it is read under
#: the `dataset_metadata.` prefix.
DATASET_KEYS: tuple[str, ...] = ("dataset_path", "dataset", "data_path", "dataset_dir", "data_dir")
_MAX_CONFIG_BYTES = 16 * 1024 * 1024


@dataclass
class ConfigResult:
    config: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    issues: list[IngestIssue] = field(default_factory=list)


#: More keys than this after flattening means a pathological file (e.g. a YAML alias bomb): ignored.
MAX_KEYS = 100_000


class ConfigTooLarge(ValueError):
    pass


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {"a.b.c": value}. Lists stay values (layer widths are lists).

    Iterative, and bounded by MAX_KEYS, so a hostile file (deep nesting, YAML aliases that expand
    exponentially) cannot exhaust the stack or memory.
    """
    out: dict[str, Any] = {}
    if not isinstance(data, Mapping):
        if prefix:
            out[prefix] = data
        return out
    if not data and prefix:
        out[prefix] = {}
    stack = [(prefix, iter(data.items()))]
    visited = 0
    while stack:
        base, items = stack[-1]
        for key, value in items:
            visited += 1
            if visited > MAX_KEYS:
                raise ConfigTooLarge(f"more than {MAX_KEYS} keys after flattening")
            name = f"{base}.{key}" if base else str(key)
            if isinstance(value, Mapping) and value:
                stack.append((name, iter(value.items())))
                break  # descend now; this level's iterator resumes afterwards (file order kept)
            out[name] = {} if isinstance(value, Mapping) else value
        else:
            stack.pop()
    return out


#: Python refuses to turn longer digit strings into ints (sys.get_int_max_str_digits, CVE-2020-10735).
_MAX_INT_DIGITS = 4300


class _Numbers:
    """Integer parsing for config files that never raises: an integer too long for Python's
    str->int limit (a 5,000-digit number) becomes +-inf and is counted, so the file is still read
    and the caller reports it as a warning (issue 12, item 6). Metadata validation then refuses
    the inf where it matters (horizon, gamma)."""

    def __init__(self) -> None:
        self.too_long = 0

    def parse_int(self, text: str) -> int | float:
        digits = len(text.lstrip("+-"))
        if digits > _MAX_INT_DIGITS:
            self.too_long += 1
            return -math.inf if text.startswith("-") else math.inf
        return int(text)


def _yaml_loader(numbers: _Numbers) -> type[yaml.SafeLoader]:
    """SafeLoader whose int constructor goes through `numbers` (PyYAML calls int() unguarded)."""

    class Loader(yaml.SafeLoader):
        pass

    def construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
        text = str(loader.construct_scalar(node)).replace("_", "")
        plain = text.lstrip("+-")
        if plain.isdigit() and len(plain) > _MAX_INT_DIGITS:
            return numbers.parse_int(text)
        return yaml.SafeLoader.construct_yaml_int(loader, node)

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    return Loader


def _load(path: Path) -> tuple[Any, str | None]:
    """Parse a JSON or YAML file: (data, None) or (None, reason)."""
    data, problem, _ = _load_counting(path)
    return data, problem


def _load_counting(path: Path) -> tuple[Any, str | None, int]:
    """`_load`, plus how many integers were too long to read (each became +-inf)."""
    try:
        size = path.stat().st_size
        if size > _MAX_CONFIG_BYTES:
            return None, f"config file too large ({size} bytes); skipped", 0
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        return None, f"cannot read config file: {exc.strerror or exc.__class__.__name__}", 0
    if not text.strip():
        return None, "empty config file", 0
    numbers = _Numbers()
    is_yaml = path.suffix in (".yaml", ".yml", ".txt")  # .txt: TorchRL's `key: value` hparams text
    try:
        if is_yaml:
            return yaml.load(text, Loader=_yaml_loader(numbers)), None, numbers.too_long  # noqa: S506 - SafeLoader
        return json.loads(text, parse_int=numbers.parse_int), None, numbers.too_long
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", 0
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, f"invalid YAML: {problem}{where}", 0
    except RecursionError:
        return None, "config nesting too deep", 0
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a YAML date 2020-13-45; never the whole run
        kind = "YAML" if is_yaml else "JSON"
        return (
            None,
            f"invalid {kind}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
            0,
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:  # exotic values (arrays) compare as different
        return False


def add_mapping(result: ConfigResult, data: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Merge flattened `data` into `result`; earlier sources win, conflicts become info issues."""
    conflicts: list[str] = []
    try:
        flat = flatten(data, prefix)
    except ConfigTooLarge as exc:
        result.issues.append(IngestIssue(path=source, message=f"config ignored: {exc}", level="warning"))
        return
    for key, value in flat.items():
        if key in result.config:
            if not _same(result.config[key], value):
                conflicts.append(key)
            continue
        result.config[key] = value
        result.sources[key] = source
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (", ..." if len(conflicts) > 5 else "")
        result.issues.append(
            IngestIssue(
                path=source,
                message=f"{len(conflicts)} config key(s) differ from an earlier file and were ignored: {shown}",
                level="info",
            )
        )


def read_config_file(result: ConfigResult, path: Path, prefix: str = "") -> bool:
    """Read one config file into `result`; True if it contributed."""
    data, problem, too_long = _load_counting(path)
    if problem is not None:
        result.issues.append(IngestIssue(path=str(path), message=problem, level="warning"))
        return False
    if too_long:
        result.issues.append(
            IngestIssue(
                path=str(path),
                message=f"{too_long} integer(s) with more than {_MAX_INT_DIGITS} digits read as infinity; "
                "the rest of the file is used",
                level="warning",
            )
        )
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        result.issues.append(
            IngestIssue(
                path=str(path), message=f"config file is not a mapping (top level is {kind}); ignored"
            )
        )
        return False
    add_mapping(result, data, str(path), prefix)
    return True


def _dataset_metadata(result: ConfigResult, run_dir: Path) -> None:
    """Read `metadata.json` next to the dataset named in the config, if it exists locally."""
    for key in DATASET_KEYS:
        value = result.config.get(key)
        if not isinstance(value, str) or not value or len(value) > 4096:
            continue
        target = Path(value).expanduser()
        if not target.is_absolute():
            target = run_dir / target
        try:
            candidate = target / "metadata.json" if target.is_dir() else target.parent / "metadata.json"
            if candidate.is_file():
                read_config_file(result, candidate, prefix="dataset_metadata")
                return
        except OSError:
            continue


#: Text summaries longer than this are not parsed for hyperparameters (they are notes, not configs).
_MAX_TEXT_CONFIG_CHARS = 200_000


def namespace_repr(text: str) -> dict[str, Any]:
    """Hyperparameters from the repr of an argparse Namespace: `Namespace(gamma=0.99, seed=0, ...)`.

    Why: scripts written from Tianshou's examples log `writer.add_text("args", str(args))` and no
    config file, so gamma, batch size and the CQL settings live only in that text summary. Only
    literal values are kept (numbers, strings, bools, None, lists/tuples of them); reprs of objects
    (`alpha=<AutoAlpha ...>`, `np.float32(2.0)`) are skipped. Anything else gives {}. Never executes.
    """
    import ast

    text = text.strip()
    if not text.startswith("Namespace(") or len(text) > _MAX_TEXT_CONFIG_CHARS:
        return {}
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id != "Namespace":
        return {}
    out: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            continue
        value_node = kw.value
        # np.float32(2.0) / np.int64(3): numpy scalar reprs of numbers are kept as the number
        if (
            isinstance(value_node, ast.Call)
            and isinstance(value_node.func, ast.Attribute)
            and isinstance(value_node.func.value, ast.Name)
            and value_node.func.value.id in ("np", "numpy")
            and len(value_node.args) == 1
            and not value_node.keywords
        ):
            value_node = value_node.args[0]
        try:
            value = ast.literal_eval(value_node)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            continue
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, (bool, int, float, str, list)):
            out[kw.arg] = value
    return out


def read_configs(
    run_dir: Path, extra_files: Iterable[Path] = (), hparams: Iterable[tuple[str, Mapping[str, Any]]] = ()
) -> ConfigResult:
    """Read the run directory's config files, then `extra_files` (layout-specific places), then hparams.

    `hparams` are (event file, hparams dict) pairs from event files. Nothing above the run
    directory is searched except the documented layout-specific places the caller passes in and
    the `.hydra/` folder of a Hydra job (up to two folders up, hydra_config.py).
    """
    result = ConfigResult()
    candidates = [run_dir / name for name in CONFIG_NAMES] + list(extra_files)
    seen: set[Path] = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        try:
            if not path.is_file():
                if path.exists():
                    result.issues.append(
                        IngestIssue(path=str(path), message="config path is not a regular file")
                    )
                continue
        except OSError:
            continue
        read_config_file(result, path)
    _read_hydra(result, run_dir)
    for source, params in hparams:
        if params:
            add_mapping(result, params, source)
    _dataset_metadata(result, run_dir)
    return result


def _read_hydra(result: ConfigResult, run_dir: Path) -> None:
    """`.hydra/config.yaml` then `.hydra/overrides.yaml` of the Hydra job that wrote the run (hydra_config.py)."""
    from analyzer.ingest.hydra_config import find_hydra_dir, overrides_mapping, resolve_interpolations

    hydra_dir = find_hydra_dir(run_dir)
    if hydra_dir is None:
        return
    config = hydra_dir / "config.yaml"
    if config.is_file():
        data, problem, _ = _load_counting(config)
        if problem is not None:
            result.issues.append(IngestIssue(path=str(config), message=problem, level="warning"))
        elif not isinstance(data, Mapping):
            result.issues.append(
                IngestIssue(path=str(config), message="Hydra config is not a mapping; ignored")
            )
        else:
            try:
                flat = flatten(data)
            except ConfigTooLarge as exc:
                result.issues.append(IngestIssue(str(config), f"config ignored: {exc}", "warning"))
            else:
                resolve_interpolations(flat)
                add_mapping(result, flat, str(config))
    overrides = hydra_dir / "overrides.yaml"
    if overrides.is_file():
        data, problem, _ = _load_counting(overrides)
        if problem is not None and problem != "empty config file":
            result.issues.append(IngestIssue(path=str(overrides), message=problem, level="warning"))
        elif data is not None:
            add_mapping(result, overrides_mapping(data, str(overrides), result.issues), str(overrides))
