"""Paths as URIs, so that the same job runs locally and on a cluster."""

from __future__ import annotations

import re
from pathlib import Path

# The checkout: where the default MLflow store, the sample and the generated docs live.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

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
        return Path(uri[len("file://") :])
    if uri.startswith("file:"):
        return Path(uri[len("file:") :])
    if not has_scheme(uri):
        return Path(uri).expanduser().resolve()
    return None


def local_input_bytes(spec: str) -> int | None:
    """The bytes behind a local file, directory (its files, recursively) or glob.

    None when it is remote or matches nothing: the size is then unknown here, and a job that
    needs it (to choose its JVM's options) assumes a large input. The job itself still reports
    a missing input its own way.
    """
    import glob

    local = local_path(spec)
    if local is None:
        return None
    is_glob = any(c in str(local) for c in "*?[")
    matches = [Path(m) for m in glob.glob(str(local))] if is_glob else [local]
    if not any(m.exists() for m in matches):
        return None
    total = 0
    for match in matches:
        if match.is_dir():
            total += sum(f.stat().st_size for f in match.rglob("*") if f.is_file())
        elif match.is_file():
            total += match.stat().st_size
    return total
