"""``c2ser`` command line: one subcommand per module in :mod:`c2ser.cli`.

Each module exposes ``register(subparsers)`` (which adds its parser and ``set_defaults(func=run)``)
and keeps heavy imports inside ``run`` so that ``c2ser --help`` answers instantly. Expected
failures (bad input, missing files) surface as :class:`~c2ser.data.manifest.BadInputError` and are
printed as one line with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import c2ser
from c2ser.cli._help import use_help_formatter
from c2ser.core.errors import BadInputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c2ser",
        description="Speech emotion recognition with audio language models (C2SER, Emotion2Vec-S). "
        "Training and evaluation run through `python train.py` / `python evaluate.py` (Hydra); "
        "these subcommands prepare data, convert checkpoints, extract features and report.",
    )
    parser.add_argument("--version", action="version", version=f"c2ser {c2ser.__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    import c2ser.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in ("main", "_help"):
            continue
        module = importlib.import_module(f"c2ser.cli.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    use_help_formatter(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except BadInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; finished outputs are kept, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
