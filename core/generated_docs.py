"""Rewrite a generated section of a document (the README's results tables) between markers."""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError


def check_section(path: str | Path, begin: str, end: str) -> str:
    """The text of ``path``, refused with a clear message unless it has both marker lines: a job
    checks this before its work, so a mistyped page costs nothing."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist: a report goes into a page that has its markers ({begin} ... {end})")
    text = path.read_text()
    if begin not in text or end not in text:
        raise UserError(f"{path} has no generated section markers ({begin} ... {end})")
    return text


def replace_section(path: str | Path, begin: str, end: str, body: str) -> None:
    """Put ``body`` between the ``begin`` and ``end`` marker lines of ``path``, keeping the rest."""
    head, rest = check_section(path, begin, end).split(begin, 1)
    _, tail = rest.split(end, 1)
    Path(path).write_text(f"{head}{begin}\n{body}\n{end}{tail}")
