"""The command line's one error path.

Every registered command runs inside :func:`command_errors` (:func:`guard_commands` wraps
them all once, in ``backend.cli.app``). An *expected* error, one the project raises on
purpose or a file the user named that cannot be used, becomes a single line
``error: MESSAGE`` on stderr and exit status 2 (a :class:`CommandError` may choose another
status); a command's ``--verbose`` prints the traceback before that line. Anything else is
a bug and leaves with its traceback, as Python prints it.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")

#: Marks a callback already wrapped, so wrapping twice changes nothing.
_GUARDED = "__defectloop_error_path__"


class CommandError(Exception):
    """A command's own refusal (a missing setting, a server that did not start, a job that
    failed); ``exit_code`` is the status the command ends with (2 unless told)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are one line for the user, not a bug: the ML core's
    (``DefectloopError``), the service's (``ServiceError``; over HTTP they arrive as
    ``ClientError``), Label Studio's server (``ServerError``), the simulator's, the command's
    own (:class:`CommandError`), a file that is missing, unreadable or of the wrong kind, and
    ``ValueError`` (a bad value, validation included).

    Imported when an error is being reported, so ``--help`` stays quick."""
    from backend.client import ClientError
    from backend.errors import ServiceError
    from labelstudio.server import ServerError
    from ml import DefectloopError
    from simulator.errors import SimulationError

    return (
        DefectloopError,
        ServiceError,
        ClientError,
        ServerError,
        SimulationError,
        CommandError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
        ValueError,
    )


def echo_error(message: str) -> None:
    """One ``error: MESSAGE`` line on stderr (the whole message, however many lines it has)."""
    typer.echo(f"error: {message}", err=True)


def fail(err: BaseException, *, verbose: bool = False) -> NoReturn:
    """Report ``err`` as :func:`echo_error` does (its traceback first when ``verbose``) and
    end the command with its exit status (2, or a :class:`CommandError`'s own)."""
    if verbose:
        traceback.print_exception(err)
    echo_error(str(err))
    raise typer.Exit(err.exit_code if isinstance(err, CommandError) else 2)


def command_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` with the error path: expected errors (:func:`expected_errors`) end in :func:`fail`,
    verbose when the command was given ``--verbose``; other exceptions pass unchanged. The
    wrapper keeps ``fn``'s signature, so typer reads the same options from it."""
    if getattr(fn, _GUARDED, False):
        return fn

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not isinstance(e, expected_errors()):
                raise
            fail(e, verbose=bool(kwargs.get("verbose", False)))

    setattr(run, _GUARDED, True)
    return run


def is_guarded(fn: Callable[..., Any] | None) -> bool:
    """Whether ``fn`` runs inside :func:`command_errors`."""
    return bool(getattr(fn, _GUARDED, False))


def guard_commands(app: typer.Typer) -> None:
    """Wrap every command registered on ``app`` and on its sub-apps with :func:`command_errors`
    (call it once all commands are registered, before the app runs)."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = command_errors(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            guard_commands(group.typer_instance)
