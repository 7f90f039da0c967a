"""`offrl-train`: train CQL or BRAC on an offline dataset, logging what `offrl-analyze` reads.

Flags mirror `TrainConfig` fields; `--config FILE` (YAML with the same keys) is read first and
flags given on the command line override it. Bad input exits with code 2 and one message; a run
stopped by a NaN/Inf loss exits with code 1 and one message (its last finite checkpoint is kept).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from reference_trainer.config import ConfigError, NonFiniteLoss, load_yaml_config, resolve_config
from reference_trainer.data import DatasetError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

Opt = typer.Option


@app.command(help=__doc__)
def run(
    algo: Annotated[str | None, Opt(help="cql | brac (default cql)")] = None,
    dataset: Annotated[str | None, Opt(help="D4RL-style .npz dataset")] = None,
    steps: Annotated[int | None, Opt(help="gradient steps (default 100000)")] = None,
    ckpt_every: Annotated[int | None, Opt(help="checkpoint interval in steps (default 5000)")] = None,
    log_every: Annotated[int | None, Opt(help="logging window in steps (default 1000)")] = None,
    log_dir: Annotated[str | None, Opt(help="run directory (default runs/offrl)")] = None,
    seed: Annotated[int | None, Opt(help="(default 0)")] = None,
    device: Annotated[str | None, Opt(help="cpu | cuda[:N] (default cpu)")] = None,
    resume: Annotated[
        bool, Opt("--resume", help="continue from the latest valid checkpoint in --log-dir")
    ] = False,
    config: Annotated[Path | None, Opt(help="YAML file with the same keys as the flags")] = None,
    precision: Annotated[
        str | None, Opt(help="fp32 | bf16 (bf16 hidden layers, fp32 Q head and losses)")
    ] = None,
    threads: Annotated[
        int | None, Opt(help="torch threads (default 1 on <= 2 cores, else cores/2 up to 8)")
    ] = None,
    gamma: Annotated[
        float | None, Opt(help="discount when the dataset metadata lacks it (default 0.99)")
    ] = None,
    horizon: Annotated[int | None, Opt(help="episode horizon when the metadata lacks it")] = None,
    reward_range: Annotated[
        str | None, Opt(help="LO,HI per-step reward range when the metadata lacks it")
    ] = None,
    batch_size: Annotated[int | None, Opt(help="(default 256)")] = None,
    n_actions: Annotated[
        int | None, Opt(help="sampled actions per source in the CQL logsumexp (default 10)")
    ] = None,
    bc_steps: Annotated[
        int | None, Opt(help="CQL actor warm start / BRAC behaviour fit (default 10000)")
    ] = None,
    cql_alpha: Annotated[float | None, Opt(help="fixed CQL alpha (min_q_weight) (default 1.0)")] = None,
    cql_target_gap: Annotated[float | None, Opt(help="Lagrangian alpha with this target gap")] = None,
    backup: Annotated[
        str | None,
        Opt(help="CQL TD backup action: sample (authors' code, default) | mean (tanh of pi's mean)"),
    ] = None,
    brac_variant: Annotated[str | None, Opt(help="vp (value penalty) | pr (policy regularization)")] = None,
    brac_beta: Annotated[float | None, Opt(help="BRAC divergence weight (default 1.0)")] = None,
    hidden: Annotated[int | None, Opt(help="hidden width (default 256)")] = None,
    depth: Annotated[int | None, Opt(help="hidden layers (default 3)")] = None,
    encoder: Annotated[str | None, Opt(help="mlp | conv | resnet (image datasets)")] = None,
    dropout: Annotated[float | None, Opt(help="dropout probability in the Q networks")] = None,
    vib: Annotated[float | None, Opt(help="variational information bottleneck weight beta")] = None,
    l1: Annotated[float | None, Opt(help="L1 weight: sum of mean |theta| of the Q networks")] = None,
    l2: Annotated[float | None, Opt(help="L2 weight (Adam weight decay on the Q networks)")] = None,
    dr3: Annotated[float | None, Opt(help="DR3 feature dot-product weight")] = None,
) -> None:
    flags: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("config", "resume")}
    if resume:
        flags["resume"] = True
    try:
        file_values = load_yaml_config(config) if config is not None else {}
        cfg = resolve_config(file_values, flags)
        if not cfg.dataset:
            raise ConfigError("--dataset is required (flag or config file)")
        from reference_trainer.train import train  # imports torch: only once the flags are sane

        run_dir = train(cfg, echo=lambda m: typer.echo(m, err=True))
    except (ConfigError, DatasetError) as exc:
        typer.echo(f"offrl-train: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except NonFiniteLoss as exc:  # the run itself failed (not the input): exit 1
        typer.echo(f"offrl-train: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # unwritable log dir, disk full, ...
        typer.echo(f"offrl-train: error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("offrl-train: interrupted; continue from the last checkpoint with --resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"done: logs and checkpoints in {run_dir}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="offrl-train")


if __name__ == "__main__":
    main()
