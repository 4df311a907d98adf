"""Paths as URIs, so that the same job runs locally and on a cluster."""

from __future__ import annotations

import re
from pathlib import Path

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def has_scheme(path: str) -> bool:
    return bool(_SCHEME.match(path)) and not re.match(r"^[a-zA-Z]:[\\/]", path)


def to_uri(path: str | Path) -> str:
    """A Hadoop-compatible URI: relative local paths become absolute file:// URIs.

    Executors resolve relative paths against their own working directory, not the driver's.
    """
    text = str(path)
    if has_scheme(text):
        return text
    return Path(text).expanduser().resolve().as_uri()


def local_path(uri: str) -> Path | None:
    """The local filesystem path behind a URI, or None for a remote store."""
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if uri.startswith("file:"):
        return Path(uri[len("file:"):])
    if not has_scheme(uri):
        return Path(uri).expanduser().resolve()
    return None
