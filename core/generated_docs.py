"""Rewrite a generated section of a document (the README's results tables) between markers."""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError


def replace_section(path: str | Path, begin: str, end: str, body: str) -> None:
    """Put ``body`` between the ``begin`` and ``end`` marker lines of ``path``, keeping the rest."""
    path = Path(path)
    text = path.read_text()
    if begin not in text or end not in text:
        raise UserError(f"{path} has no generated section markers ({begin} ... {end})")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{body}\n{end}{tail}")
