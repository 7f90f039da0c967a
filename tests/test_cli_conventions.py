"""The three command lines share one error and exit-code convention (analyzer/cli_errors.py):
2 + one line `<prog>: error: ...` for bad usage and bad input, 130 on Ctrl-C, 141 when stdout's reader
left, an internal error as one line (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer.cli import app as analyze_app
from analyzer.cli_errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, CliError, run_guarded

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("OFFRL_DEBUG", raising=False)


def _train_app():
    pytest.importorskip("torch")
    from reference_trainer.cli import app

    return app


def _eval(argv: list[str], capsys) -> tuple[int, str]:
    from robot_eval.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


def _one_line(err: str, prog: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], err


@pytest.mark.parametrize("flag", ["--no-such-flag", "--colour"])
def test_unknown_flag_is_exit_2_and_one_line_in_every_cli(flag, capsys):
    r = CliRunner().invoke(analyze_app, [str(DEMO), flag])
    assert r.exit_code == EXIT_USAGE
    _one_line(r.stderr, "offrl-analyze", "No such option", flag)

    r = CliRunner().invoke(_train_app(), ["--dataset", "x.npz", flag])
    assert r.exit_code == EXIT_USAGE
    _one_line(r.stderr, "offrl-train", "No such option", flag)

    code, err = _eval(["info", "x.npz", flag], capsys)
    assert code == EXIT_USAGE
    _one_line(err, "offrl-eval", "No such option", flag)


def test_bad_values_and_missing_arguments_are_exit_2_one_line(capsys):
    code, err = _eval(["checkpoints"], capsys)
    assert code == EXIT_USAGE
    _one_line(err, "offrl-eval", "Missing argument")
    code, err = _eval(["collect", "-q"], capsys)
    assert code == EXIT_USAGE
    _one_line(err, "offrl-eval", "Missing option", "--out")
    code, err = _eval(["info", "x.npz", "--format", "xml"], capsys)
    assert code == EXIT_USAGE
    _one_line(err, "offrl-eval", "--format: expected one of text, json, got 'xml'")
    code, err = _eval(["checkpoints", "run", "--episodes", "many"], capsys)
    assert code == EXIT_USAGE
    _one_line(err, "offrl-eval", "--episodes")
    code, err = _eval(["nope"], capsys)
    assert code == EXIT_USAGE
    _one_line(err, "offrl-eval", "No such command")

    r = CliRunner().invoke(_train_app(), ["--steps", "many"])
    assert r.exit_code == EXIT_USAGE
    _one_line(r.stderr, "offrl-train", "--steps")


def test_ctrl_c_is_130_with_one_line_in_every_cli(monkeypatch, capsys):
    import analyzer.api
    import robot_eval.cli

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(analyzer.api, "analyze", interrupt)
    r = CliRunner().invoke(analyze_app, [str(DEMO), "-q"])
    assert r.exit_code == EXIT_INTERRUPTED and r.stderr.strip() == "offrl-analyze: interrupted"

    monkeypatch.setattr(robot_eval.cli, "_cmd_info", interrupt)
    code, err = _eval(["info", "x.npz"], capsys)
    assert code == EXIT_INTERRUPTED and err.strip() == "offrl-eval: interrupted"


def test_internal_error_is_one_line_unless_debugging(monkeypatch, capsys):
    import robot_eval.cli

    def bug(*a, **k):
        raise ZeroDivisionError("kaboom")

    monkeypatch.setattr(robot_eval.cli, "_cmd_info", bug)
    code, err = _eval(["info", "x.npz"], capsys)
    assert code == EXIT_USAGE
    _one_line(err, "offrl-eval", "internal error: ZeroDivisionError: kaboom", "OFFRL_DEBUG=1")
    monkeypatch.setenv("OFFRL_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        _eval(["info", "x.npz"], capsys)


def test_a_reader_that_left_is_141_and_quiet(monkeypatch):
    import analyzer.cli

    def gone(*a, **k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(analyzer.cli, "_emit", gone)
    r = CliRunner().invoke(analyze_app, [str(DEMO), "-q"])
    assert r.exit_code == EXIT_BROKEN_PIPE and r.stderr == ""


def test_run_guarded_maps_a_commands_own_errors_and_return_codes(capsys):
    import typer

    from analyzer.cli_errors import GuardedCommand

    class Failed(Exception):
        pass

    def body(mode: str = "ok") -> int:
        if mode == "mine":
            raise Failed("the run diverged")
        if mode == "oserror":
            raise PermissionError(13, "Permission denied", "/ro/x")
        if mode == "cli":
            raise CliError("bad thing", code=3)
        return 0 if mode == "ok" else 1

    app = typer.Typer(add_completion=False)
    app.command(cls=GuardedCommand)(body)
    cmd = typer.main.get_command(app)
    errors = {Failed: 1}
    assert run_guarded("p", cmd, ["--mode", "ok"], errors=errors) == 0
    assert run_guarded("p", cmd, ["--mode", "findings"], errors=errors) == 1
    assert capsys.readouterr().err == ""
    assert run_guarded("p", cmd, ["--mode", "mine"], errors=errors) == 1
    assert capsys.readouterr().err == "p: error: the run diverged\n"
    assert run_guarded("p", cmd, ["--mode", "oserror"], errors=errors) == 2
    assert capsys.readouterr().err == "p: error: /ro/x: Permission denied\n"
    assert run_guarded("p", cmd, ["--mode", "cli"], errors=errors) == 3
    assert capsys.readouterr().err == "p: error: bad thing\n"
    assert run_guarded("p", cmd, ["--help"], errors=errors) == 0
