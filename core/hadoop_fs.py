"""Just enough of Hadoop's FileSystem API, so every path may be file://, hdfs:// or s3a://."""

from __future__ import annotations

import re

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

# One spelling per file: Spark writes file:/x in data and file:///x in its logs.
FILE_URI_PREFIX, CANONICAL_FILE_PREFIX = "^file:/+", "file:///"


def canonical_path(uri: str) -> str:
    """A file's URI in its one spelling."""
    return re.sub(FILE_URI_PREFIX, CANONICAL_FILE_PREFIX, uri)


def canonical_path_column(column: str = "path"):
    """Spark SQL for ``canonical_path`` of a column of file URIs."""
    from pyspark.sql import functions as F

    return F.regexp_replace(column, FILE_URI_PREFIX, CANONICAL_FILE_PREFIX)


class HadoopFs:
    """Just enough of Hadoop's FileSystem API, so paths may be file://, hdfs:// or s3a://."""

    def __init__(self, spark):
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()

    def _path(self, uri: str):
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path, path.getFileSystem(self._conf)

    def exists(self, uri: str) -> bool:
        path, fs = self._path(uri)
        return bool(fs.exists(path))

    def mkdirs(self, uri: str) -> None:
        path, fs = self._path(uri)
        fs.mkdirs(path)

    def rename(self, source: str, target: str) -> bool:
        source_path, fs = self._path(source)
        target_path, _ = self._path(target)
        return bool(fs.rename(source_path, target_path))

    def delete(self, uri: str) -> None:
        path, fs = self._path(uri)
        fs.delete(path, True)

    def read_bytes(self, uri: str) -> bytes:
        path, fs = self._path(uri)
        stream = fs.open(path)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def write_text(self, uri: str, text: str) -> None:
        path, fs = self._path(uri)
        stream = fs.create(path, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def list_names(self, uri: str) -> set[str]:
        path, fs = self._path(uri)
        if not fs.exists(path):
            return set()
        return {status.getPath().getName() for status in fs.listStatus(path)}

    def list_files(self, uri: str, suffix: str = ".csv") -> list[str]:
        """Files behind a file, directory or glob URI, sorted; hidden names (. or _) left out."""
        path, fs = self._path(uri)
        statuses = fs.globStatus(path) or []
        found = []
        for status in statuses:
            children = fs.listStatus(status.getPath()) if status.isDirectory() else [status]
            for child in children:
                name = child.getPath().getName()
                if child.isFile() and name.endswith(suffix) and not name.startswith((".", "_")):
                    found.append(canonical_path(child.getPath().toString()))
        return sorted(set(found))
