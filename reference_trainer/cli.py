"""`offrl-train`: train CQL or BRAC on an offline dataset, logging what `offrl-analyze` reads.

One flag per `TrainConfig` field (`--policy-lr` for `policy_lr`, ...), built from the dataclass, so
the flags, the `--config FILE` YAML keys and config.json cannot drift apart. The YAML file is read
first and flags given on the command line override it. Bad input exits with code 2 and one
message; a run stopped by a NaN/Inf loss exits with code 1 and one message (its last finite
checkpoint is kept); Ctrl-C exits 130 (analyzer/cli_errors.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.cli_errors import EXIT_FAIL, EXIT_USAGE, GuardedCommand
from reference_trainer.config import (
    ConfigError,
    NonFiniteLoss,
    TrainConfig,
    flag_fields,
    load_yaml_config,
    resolve_config,
)
from reference_trainer.data import DatasetError

PROG = "offrl-train"


class _TrainCommand(GuardedCommand):
    prog = PROG
    interrupted = "; continue from the last checkpoint with --resume"

    def user_errors(self) -> Mapping[type[BaseException], int]:
        # OSError: an unwritable log dir, a full disk; NonFiniteLoss: the run itself failed, not the input
        return {ConfigError: EXIT_USAGE, DatasetError: EXIT_USAGE, NonFiniteLoss: EXIT_FAIL}


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _help(f: dataclasses.Field) -> str:
    text = str(f.metadata.get("help", ""))
    if f.default not in (None, "", dataclasses.MISSING) and not isinstance(f.default, bool):
        text += f" (default {f.default})"
    return text


def _flag_parameter(f: dataclasses.Field, hint: Any) -> inspect.Parameter:
    """The typer parameter of one TrainConfig field. Every flag defaults to None ("not given"), so a
    value from --config is only overridden by a flag actually typed; booleans are plain switches."""
    opt = typer.Option(flag_name(f.name), help=_help(f), metavar=f.metadata.get("metavar"))
    args = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
    if args == {bool}:
        annotation: Any = Annotated[bool, opt]
        default: Any = False
    elif len(args) == 1 and next(iter(args)) in (int, float, str):
        annotation = Annotated[typing.Optional[next(iter(args))], opt]  # noqa: UP045 - built at run time
        default = None
    else:  # reward_range: "LO,HI", parsed by resolve_config like the YAML value
        annotation = Annotated[typing.Optional[str], opt]  # noqa: UP045
        default = None
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _signature() -> inspect.Signature:
    hints = typing.get_type_hints(TrainConfig)
    params = [_flag_parameter(f, hints[f.name]) for f in flag_fields()]
    config = typer.Option("--config", help="YAML file whose keys are these flags' names (either spelling)")
    params.append(
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[typing.Optional[Path], config],  # noqa: UP045
        )
    )
    return inspect.Signature(params, return_annotation=None)


def run(**values: Any) -> None:
    """Train (the body of the `offrl-train` command; flags come from TrainConfig's fields)."""
    config = values.pop("config", None)
    flags = {k: v for k, v in values.items() if v is not None and v is not False}
    file_values = load_yaml_config(config) if config is not None else {}
    cfg = resolve_config(file_values, flags)
    if not cfg.dataset:
        raise ConfigError("--dataset is required (flag or config file)")
    from reference_trainer.train import train  # imports torch: only once the flags are sane

    run_dir = train(cfg, echo=lambda m: typer.echo(m, err=True))
    typer.echo(f"done: logs and checkpoints in {run_dir}", err=True)


run.__signature__ = _signature()  # type: ignore[attr-defined]
run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}  # type: ignore[attr-defined]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command(cls=_TrainCommand, help=__doc__, context_settings={"help_option_names": ["-h", "--help"]})(run)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; `offrl-train sweep SWEEP.yaml ...` goes to reference_trainer.sweep."""
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["sweep"]:  # a sub-command beside the flags-only training command
        from reference_trainer.sweep import main as sweep_main

        return sweep_main(args[1:])
    app(args=args, prog_name=PROG)


if __name__ == "__main__":
    main()
