"""Command-line pieces every job shares, so `--help` reads alike and MLproject values parse alike."""

from __future__ import annotations

import argparse

from core.logs import add_verbose_flag, configure_logging

# MLproject defaults: `mlflow run` logs each parameter shell-quoted, so '' would show as "''" in
# the UI and local[*] as "'local[*]'"; plain words log as typed.
AUTO_MASTER = "auto"
NONE_WORDS = ("", "none")


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (required options)."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, [], argparse.SUPPRESS):
            return action.help or ""
        return super()._get_help_string(action)


class JobParser(argparse.ArgumentParser):
    """Every job's options end with --verbose, and parsing them sets what the job prints."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        configure_logging(parsed.verbose)
        return parsed, rest


def job_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser whose --help shows every default, with the shared --verbose."""
    parser = JobParser(description=description, formatter_class=_DefaultsHelp)
    add_verbose_flag(parser)
    return parser


def optional_text(text: str | None) -> str | None:
    """A parameter that MLproject fills with 'none' (or '') when the user gave nothing."""
    if text is None or text.strip().lower() in NONE_WORDS:
        return None
    return text.strip()


def master_arg(text: str | None) -> str | None:
    """'auto' (or nothing) leaves the choice to $SPARK_MASTER, spark-submit or local mode."""
    if text is None or text.strip().lower() in (AUTO_MASTER, *NONE_WORDS):
        return None
    return text.strip()


def add_spark_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--master",
        type=master_arg,
        default=AUTO_MASTER,
        help="Spark master; 'auto': $SPARK_MASTER if set, else local[*]",
    )
    parser.add_argument("--conf", action="append", default=[], help="extra Spark setting key=value (repeatable)")


def flag(text: str) -> bool:
    """A boolean that reads the same on the command line and as an MLproject parameter."""
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")
