"""Error and exit-code conventions shared by the three command lines: offrl-analyze, offrl-train, offrl-eval.

Why one module: a CI job chains the tools (`offrl-train ... && offrl-eval checkpoints ... &&
offrl-analyze ...`) and must read their exit codes the same way; and a user who gets one line
from one tool should never get a traceback from another. Every typer app of the project uses
`GuardedGroup` or `GuardedCommand`, whose `main` runs the command and maps each outcome here:

    0    done, nothing to report
    1    the command ran and found a failure: offrl-analyze --fail-on matched, offrl-train stopped on
         a NaN/Inf loss, offrl-eval could not read some checkpoint (the rest were still scored)
    2    bad usage or bad input: an unknown flag, a bad value, a missing or unreadable file, a bad
         rules/config file, and an internal error; always ONE line `<prog>: error: <message>`
         on stderr, never a traceback (OFFRL_DEBUG=1 re-raises an internal error to show one)
    130  interrupted (Ctrl-C): `<prog>: interrupted` (plus the command's hint)
    141  stdout closed by its reader (`offrl-analyze logs | head`): quiet, as `cat` does

The analyzer is the lowest layer (docs/architecture.md), so the module lives here and the trainer
and offrl-eval import it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

try:  # typer >= 0.20 vendors click; older typer uses the click package itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exc  # type: ignore[no-redef,unused-ignore]

from analyzer.output.names import terminal

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAIL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "GuardedCommand",
    "GuardedGroup",
    "one_line",
    "print_error",
    "run_guarded",
]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141


class CliError(Exception):
    """A user-facing error: `<prog>: error: <message>` on one line, exit `code` (2 unless said)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: object) -> str:
    """One line with no control character: messages quote paths, and paths can hold anything."""
    return terminal(" ".join(part.strip() for part in str(text).splitlines() if part.strip()))


def print_error(prog: str, message: object) -> None:
    sys.stderr.write(f"{prog}: error: {one_line(message)}\n")
    sys.stderr.flush()


def _os_message(exc: OSError) -> str:
    """`<file>: <reason>` for an OSError (disk full, permission denied, ...)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _quiet_stdout() -> None:
    """The reader of stdout went away: send what is still buffered nowhere, so exit is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def run_guarded(
    prog: str,
    command: Any,
    args: Sequence[str] | None = None,
    *,
    errors: Mapping[type[BaseException], int] | None = None,
    interrupted: str = "",
    **extra: Any,
) -> int:
    """Parse `args` and run the click `command`; every outcome becomes an exit code (module docstring).

    `errors`: the command's own user-facing exception types and their exit codes (e.g. the trainer's
    ConfigError -> 2, NonFiniteLoss -> 1); each is printed as one line. `interrupted`: appended to
    the Ctrl-C message (the trainer says how to resume). `extra` goes to click's make_context
    (e.g. `obj=`). The command's return value is the exit code when it is an int, else 0.
    """
    argv = list(sys.argv[1:] if args is None else args)
    known = tuple(errors or {})
    try:
        with command.make_context(prog, argv, **extra) as ctx:
            rv = command.invoke(ctx)
    except typer.Exit as e:  # --help, --version, typer.Exit(code)
        return int(e.exit_code)
    except CliError as e:
        print_error(prog, e)
        return e.code
    except (KeyboardInterrupt, EOFError, typer.Abort):
        sys.stderr.write(f"{prog}: interrupted{interrupted}\n")
        return EXIT_INTERRUPTED
    except click_exc.ClickException as e:  # usage: unknown option, missing argument, bad value
        print_error(prog, e.format_message())
        return EXIT_USAGE if e.exit_code in (1, 2) else int(e.exit_code)
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as e:
        for kind in known:
            if isinstance(e, kind):
                assert errors is not None
                print_error(prog, _os_message(e) if isinstance(e, OSError) else e)
                return errors[kind]
        if isinstance(e, OSError):
            if e.errno == errno.EPIPE:
                _quiet_stdout()
                return EXIT_BROKEN_PIPE
            print_error(prog, _os_message(e))
            return EXIT_USAGE
        if os.environ.get("OFFRL_DEBUG"):
            raise
        print_error(prog, f"internal error: {type(e).__name__}: {e} (set OFFRL_DEBUG=1 for a traceback)")
        return EXIT_USAGE
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK


class _Guarded:
    """`main` for a typer command or group: `run_guarded`, then exit (console script, CliRunner) or
    return the code (`standalone_mode=False`, e.g. `offrl-eval`'s `main(argv) -> int`)."""

    #: program name in messages (wins over click's guess, e.g. the function name of a 1-command app)
    prog: ClassVar[str] = ""
    #: appended to `<prog>: interrupted`
    interrupted: ClassVar[str] = ""

    def user_errors(self) -> Mapping[type[BaseException], int]:
        """The command's own exception types -> exit code (a method: it may import lazily)."""
        return {}

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        code = run_guarded(
            self.prog or prog_name or "offrl",
            self,
            args,
            errors=self.user_errors(),
            interrupted=self.interrupted,
            **extra,
        )
        if standalone_mode:
            sys.exit(code)
        return code


class GuardedGroup(_Guarded, TyperGroup):
    """A typer group (subcommands) with the project's error and exit-code conventions."""


class GuardedCommand(_Guarded, TyperCommand):
    """A single typer command with the project's error and exit-code conventions."""
