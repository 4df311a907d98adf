"""The driver's JVM: which Java runs it (Spark 4 needs 17 or 21) and the class-data archive that
``bin/jvm_archive.py`` builds for it once, so short jobs start sooner."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from core.errors import UserError

SUPPORTED_JAVA = (17, 21)
# Where bin/jvm_archive.py puts the archive: inside the environment whose PySpark it serves.
ARCHIVE_DIR = Path(sys.prefix) / "share" / "server-anomaly"


def java_version_text(java: str) -> str | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stderr + out.stdout


def java_major_version(java: str, text: str | None = None) -> int | None:
    text = text if text is not None else java_version_text(java)
    for token in (text or "").split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head.isdigit():
                major = int(head)
                return int(token.split(".")[1]) if major == 1 else major
    return None


def check_java() -> tuple[str, str]:
    """Spark 4 needs Java 17 or 21: say so plainly rather than fail inside py4j.

    Returns the java executable and its ``-version`` text."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise UserError(
            "Java was not found; Spark needs Java 17 or 21. On Debian/Ubuntu: "
            "apt-get install openjdk-17-jre-headless (or run bin/setup)"
        )
    text = java_version_text(java)
    major = java_major_version(java, text)
    if major not in SUPPORTED_JAVA:
        raise UserError(
            f"{java} is Java {major}; Spark 4 needs Java 17 or 21. Install "
            "openjdk-17-jre-headless and set JAVA_HOME to it"
        )
    return java, text or ""


def archive_path(java: str, version_text: str) -> Path:
    import pyspark

    # Real paths: the same environment reached through a symlink (a checkout linking a shared
    # .venv) must find its archive, which the JVM accepts since it compares the jars' real files.
    key = hashlib.sha256(
        "\n".join(
            [
                os.path.realpath(java),
                version_text,
                os.path.realpath(sys.prefix),
                os.path.realpath(Path(pyspark.__file__).parent),
            ]
        ).encode()
    ).hexdigest()[:16]
    return ARCHIVE_DIR / f"spark-{pyspark.__version__}-{key}.jsa"


def archive_options(java: str, version_text: str) -> list[str]:
    """JVM options that use the archive, or none when it was not built for this Java/PySpark."""
    path = archive_path(java, version_text)
    if not path.is_file():
        return []
    # cds logging off: a stale or foreign archive is then skipped without a word, as if absent.
    return [f"-XX:SharedArchiveFile={path}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
