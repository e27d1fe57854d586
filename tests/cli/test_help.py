"""``--help`` of every subcommand shows every default, and the defaults agree with evaluate.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from c2ser.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]


def _parsers(parser: argparse.ArgumentParser, name: str = "c2ser"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_default_is_in_the_help():
    missing = []
    for name, parser in _parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            if not action.option_strings or any(default is v for v in (None, False)):
                continue
            if default is argparse.SUPPRESS:
                continue
            if f"(default: {default})" not in text:
                missing.append(f"{name} {action.option_strings[0]} = {default!r}")
    assert not missing, missing


def test_infer_stage_default_agrees_with_evaluate():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    infer = sub.choices["infer"].parse_args(["--checkpoint", "m", "--manifest", "x", "--out", "o"])
    evaluate = yaml.safe_load((REPO / "conf" / "evaluate.yaml").read_text())
    assert infer.stage == evaluate["stage"] == 2
    assert infer.decoding == evaluate["decoding"] and infer.batch_size == evaluate["batch_size"]
    assert infer.max_new_tokens == evaluate["max_new_tokens"] and not infer.skip_bad
