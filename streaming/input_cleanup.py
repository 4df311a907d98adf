"""What the monitor does with input files once processed: Spark's ``cleanSource`` (off, archive,
delete), and the archive directory checked as Spark checks it, before the query starts."""

from __future__ import annotations

import fnmatch
import posixpath

from core.errors import UserError
from core.paths import to_uri

CLEAN_SOURCE_MODES = ("off", "archive", "delete")  # Spark's FileStreamSource cleanSource values


def _fs_and_parts(uri: str) -> tuple[tuple[str, str], list[str]]:
    from urllib.parse import urlsplit

    parsed = urlsplit(uri)
    path = posixpath.normpath(parsed.path or "/")  # not unquoted: Hadoop's Path keeps %xx as written
    return (parsed.scheme.lower(), parsed.netloc.lower()), [part for part in path.split("/") if part]


def _component_matches(pattern: str, name: str) -> bool:
    """Whether path component ``name`` matches the Hadoop glob component ``pattern``."""
    if not any(c in pattern for c in "*?[{"):
        return pattern == name
    head, brace, rest = pattern.partition("{")
    if brace and "}" in rest:
        options, _, tail = rest.partition("}")
        return any(_component_matches(head + option + tail, name) for option in options.split(","))
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!"))


def archive_target(input_uri: str, mode: str, archive_dir: str) -> str:
    """The URI for Spark's ``sourceArchiveDir`` ("" unless archiving), or a UserError saying why
    the settings cannot work, before Spark fails on them at the query's start."""

    if mode not in CLEAN_SOURCE_MODES:
        raise UserError(f"--clean-source must be one of {', '.join(CLEAN_SOURCE_MODES)}, got {mode!r}")
    if mode != "archive":
        if archive_dir:
            # Likely meant archive: with delete, files the user wanted kept would be lost.
            raise UserError(f"--archive-dir is used only with --clean-source archive, not {mode}")
        return ""
    if not archive_dir:
        raise UserError(
            "--clean-source archive needs --archive-dir: the directory processed files are moved to, "
            "each under its full path"
        )
    archive_uri = to_uri(archive_dir)
    (source_scheme, source_host), source_parts = _fs_and_parts(input_uri)
    (archive_scheme, archive_host), archive_parts = _fs_and_parts(archive_uri)
    if source_scheme != archive_scheme or (source_host and archive_host and source_host != archive_host):
        raise UserError(
            f"--archive-dir {archive_uri} is on another filesystem than the input {input_uri}; "
            "Spark archives a file by renaming it, within one filesystem"
        )
    # Spark's own rule (FileStreamSource.SourceFileArchiver): compared down to the shallower of the
    # two paths, the archive must leave the input's pattern, or archived files could be read again.
    depth = min(len(source_parts), len(archive_parts))
    if all(_component_matches(p, a) for p, a in zip(source_parts[:depth], archive_parts[:depth])):
        beside = input_uri.rstrip("/") + "-archive"
        hint = "" if any(c in beside for c in "*?[{") else f", e.g. {beside}"
        raise UserError(
            f"--archive-dir {archive_uri} must not be the input directory {input_uri}, be inside it "
            f"or contain it (Spark refuses an archive its input pattern can match); choose one beside "
            f"it{hint}"
        )
    return archive_uri
