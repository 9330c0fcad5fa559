"""Run one bad-input case and record what the code did with it.

A case (see :mod:`tests.bad_inputs.cases`) builds its input in a folder and returns a trigger;
:func:`observe` snapshots the folder, pulls the trigger and records the outcome: ``refused``
(an exception, or a non-zero CLI exit), ``warned`` (accepted with warnings) or ``accepted``,
plus every file the attempt added, removed or changed. :func:`problems` lists how that
differs from what the case expects; the tests and ``docs/bad_inputs.py`` both use it.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SURFACES = ("reader", "cli", "plugin", "config")
CLI_USAGE_ERROR = 2
"""The exit code of every user mistake (see napari_ssseg/cli.py and argparse)."""
SHORT_RUN_WARNING = "training steps fitted in the time budget"
"""The CLI's warning about a run of under 100 steps: the cases train for 2 steps on purpose,
so this warning says nothing about their input and is left out."""


@dataclass
class Warnings:
    """What an accepted input produced as warnings (one line each)."""

    lines: list[str]


@dataclass(frozen=True)
class BadInput:
    """One named bad input and the behaviour it must get.

    Attributes:
        name: unique id (test id and table row).
        surface: ``reader``, ``cli``, ``plugin`` or ``config``.
        problem: what is wrong with the input, in words.
        build: makes the input under the given folder and returns the trigger, a callable
            that feeds it to the code (it may return :class:`Warnings`).
        error: the exception class expected, or None when the input must be accepted.
        message: regex the error (or, with ``error=None``, the warning) must match; it
            names the problem (file, shape, values). Empty: accepted without warning.
        note: why this behaviour was chosen, or how the case is simulated.
    """

    name: str
    surface: str
    problem: str
    build: Callable[[Path], Callable[[], Any]]
    error: type[BaseException] | None
    message: str
    note: str = ""

    @property
    def expected(self) -> str:
        if self.error is not None:
            return "refused"
        return "warned" if self.message else "accepted"


@dataclass
class CliRun:
    """One in-process run of ``napari_ssseg.cli.main``."""

    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.lines if "error:" in line]

    @property
    def warning_lines(self) -> list[str]:
        return [
            line
            for line in self.lines
            if line.startswith("napari-ssseg: warning: ") and SHORT_RUN_WARNING not in line
        ]


class CliFailure(Exception):
    """The CLI exited with a non-zero code; the message is its last stderr line."""

    def __init__(self, run: CliRun) -> None:
        self.run = run
        super().__init__(run.lines[-1] if run.lines else f"exit code {run.code}, no message")


def run_cli(argv: Sequence[Any]) -> CliRun:
    """Run the CLI in this process, capturing stdout, stderr and library log records."""
    from napari_ssseg.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)  # log records reach the user's terminal too
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exit_:  # argparse's own usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        root.removeHandler(handler)
    return CliRun(int(code), out.getvalue(), err.getvalue())


def cli_trigger(*argv: Any) -> Callable[[], Warnings]:
    """A trigger running ``napari-ssseg ARGV``: raises :class:`CliFailure` on a non-zero exit,
    else returns the warning lines."""

    def trigger() -> Warnings:
        run = run_cli(argv)
        if run.code != 0:
            raise CliFailure(run)
        return Warnings(run.warning_lines)

    return trigger


@dataclass
class Observed:
    """What happened to one case."""

    outcome: str
    message: str
    error: BaseException | None = None
    touched: list[str] = field(default_factory=list)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` (hidden ones too): path -> (size, mtime_ns)."""
    state = {}
    for path in folder.rglob("*"):
        info = path.lstat()
        key = str(path.relative_to(folder))
        state[key] = (info.st_size, info.st_mtime_ns) if path.is_file() else (-1, 0)
    return state


def observe(case: BadInput, folder: Path) -> Observed:
    """Build ``case`` under ``folder``, run it, and record the outcome and touched paths."""
    trigger = case.build(folder)
    before = snapshot(folder)
    try:
        result = trigger()
    except Exception as error:  # what the user would see
        observed = Observed("refused", str(error), error)
    else:
        lines = result.lines if isinstance(result, Warnings) else []
        observed = Observed("warned" if lines else "accepted", " | ".join(lines))
    after = snapshot(folder)
    observed.touched = sorted(
        path for path in set(before) | set(after) if before.get(path) != after.get(path)
    )
    return observed


def problems(case: BadInput, observed: Observed) -> list[str]:
    """How ``observed`` differs from what ``case`` expects (empty when it behaves)."""
    found = []
    if observed.outcome != case.expected:
        found.append(f"expected {case.expected}, got {observed.outcome}: {observed.message}")
        return found
    if case.message and not re.search(case.message, observed.message):
        found.append(f"message {observed.message!r} does not match {case.message!r}")
    if case.error is None:
        return found
    if not isinstance(observed.error, case.error):
        found.append(f"raised {type(observed.error).__name__}, not {case.error.__name__}")
    if "\n" in observed.message:
        found.append("the message spans several lines")
    if observed.touched:
        found.append(f"refused but wrote or changed {observed.touched}")
    if isinstance(observed.error, CliFailure):
        run = observed.error.run
        if run.code != CLI_USAGE_ERROR:
            found.append(f"exit code {run.code}, not {CLI_USAGE_ERROR}")
        if len(run.error_lines) != 1 or run.error_lines[-1] != run.lines[-1]:
            found.append(f"stderr needs one error line, last: {run.stderr!r}")
        if "Traceback" in run.stderr:
            found.append("a traceback reached stderr")
    return found
