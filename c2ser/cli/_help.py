"""What every ``c2ser`` subcommand shares in how it talks: help that shows each default, and
one way to list the failures a ``--skip-bad`` run counted."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from c2ser.core.errors import SkipReport

SHOWN_PER_KIND = 5  # a 1400-line manifest without its audio must not print 1400 lines


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and ``(default: X)`` after every option that has one, so
    ``--help`` answers "what happens if I leave this out" without reading the code."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


def use_help_formatter(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every subcommand below it :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_help_formatter(sub)


def print_failures(report: SkipReport, verb: str = "failed", file: TextIO | None = None) -> None:
    """The failures of a ``--skip-bad`` run (stderr by default), grouped by reason: a count per
    kind and its first :data:`SHOWN_PER_KIND` entries (the summary line says the total)."""
    file = file or sys.stderr
    for kind, entries in report.by_kind().items():
        print(f"{verb}: {len(entries)} {kind}", file=file)
        for entry in entries[:SHOWN_PER_KIND]:
            print(f"  {entry}", file=file)
        if len(entries) > SHOWN_PER_KIND:
            print(f"  ... and {len(entries) - SHOWN_PER_KIND} more", file=file)
