"""The streamer (the original's multistreamer): feeds CSV files into the monitor's directory.

Input: feature-table CSV files (a header, then rows), given as paths or globs.
Output: chunk files in ``--input`` (the monitor's directory), several source files at once,
``--rows`` rows per chunk every ``--interval`` seconds per file. Each chunk repeats the header,
gets a ``source`` column naming its file (unless it has a host/source column already), is
written under a unique name in a staging folder on the same filesystem, then renamed into the
directory: the monitor never sees a half-written file, and no name is ever reused.

Spark's file source takes new files in modification-time order (milliseconds; ties in listing
order) and the monitor continues each series from the rows before, so the chunks of one source
get strictly increasing modification times: two chunks written in the same millisecond could
otherwise reach the monitor in either order, and the later rows would be scored before the
earlier ones.

    python -m streaming.streamer --input streamdata data/sample/metrics.csv
    mlflow run . -e stream --env-manager local -P input=streamdata -P files=data/sample/metrics.csv
"""

from __future__ import annotations

import csv
import glob
import io
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.cli import job_parser
from core.errors import UserError, exit_process, main_guard
from core.schema import SOURCE_COLUMNS

# A filesystem whose times are coarse (FAT's are 2 s) still advances within this.
MTIME_ADVANCE_DEADLINE_SECONDS = 5.0


def mtime_ms(path: Path) -> int:
    return os.stat(path).st_mtime_ns // 1_000_000


def stamp_after(path: Path, previous_ms: int | None) -> int:
    """Touch ``path`` until its modification time (ms) is later than ``previous_ms``; return it.

    Waits for the clock instead of writing a time ahead of it, so each chunk's time is real.
    """
    stamped = mtime_ms(path)
    deadline = time.monotonic() + MTIME_ADVANCE_DEADLINE_SECONDS
    while previous_ms is not None and stamped <= previous_ms:
        if time.monotonic() > deadline:
            raise UserError(
                f"the modification time of {path} does not advance past {previous_ms} ms; "
                "the monitor could not tell the order of this source's chunks"
            )
        time.sleep(0.001)
        os.utime(path)
        stamped = mtime_ms(path)
    return stamped


@dataclass
class SourceFile:
    path: Path
    header: list[str]
    rows: list[list[str]]
    add_source: bool


def load_source(path: Path) -> SourceFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        raise UserError(f"{path} is empty; expected a header and rows")
    header = rows[0]
    return SourceFile(path, header, rows[1:], not any(c in header for c in SOURCE_COLUMNS))


def expand(patterns: list[str]) -> list[Path]:
    paths = []
    for pattern in patterns:
        for item in pattern.split(","):
            item = item.strip()
            if not item:
                continue
            matched = sorted(glob.glob(item))
            if not matched:
                raise UserError(f"no file matches {item!r}")
            paths.extend(Path(m) for m in matched)
    if not paths:
        raise UserError("give at least one file to stream")
    return paths


class Streamer:
    def __init__(
        self,
        target: Path,
        sources: list[SourceFile],
        rows_per_chunk: int,
        interval: float,
        loop: bool,
        staging: Path | None = None,
        quiet: bool = False,
    ):
        self.target = target
        self.sources = sources
        self.rows_per_chunk = rows_per_chunk
        self.interval = interval
        self.loop = loop
        self.quiet = quiet
        # Same filesystem as the target (a sibling), so the rename is atomic; hidden from Spark.
        self.staging = staging or target.parent / f".{target.name}.staging"
        self.stop = threading.Event()
        self.chunks_written = 0
        self.rows_written = 0
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def write_chunk(
        self, source: SourceFile, rows: list[list[str]], number: int, previous_ms: int | None = None
    ) -> tuple[Path, int]:
        header = source.header + (["source"] if source.add_source else [])
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row + ([source.path.stem] if source.add_source else []))
        name = f"{source.path.stem}-{number:06d}-{uuid.uuid4().hex[:8]}.csv"
        staged = self.staging / name
        staged.write_text(buffer.getvalue(), encoding="utf-8")
        stamped = stamp_after(staged, previous_ms)  # a rename keeps the time
        final = self.target / name
        os.replace(staged, final)  # atomic on one filesystem; never overwrites (unique name)
        return final, stamped

    def feed(self, source: SourceFile) -> None:
        number = 0
        previous_ms = None
        try:
            while not self.stop.is_set():
                for start in range(0, len(source.rows), self.rows_per_chunk):
                    if self.stop.is_set():
                        return
                    chunk = source.rows[start : start + self.rows_per_chunk]
                    written, previous_ms = self.write_chunk(source, chunk, number, previous_ms)
                    number += 1
                    with self._lock:
                        self.chunks_written += 1
                        self.rows_written += len(chunk)
                    if not self.quiet:
                        print(f"{source.path.name}: chunk {number} ({len(chunk)} rows) -> {written.name}", flush=True)
                    self.stop.wait(self.interval)
                if not self.loop:
                    return
        except (OSError, UserError) as error:
            with self._lock:
                self.errors.append(f"{source.path}: {error}")
            self.stop.set()

    def run(self) -> None:
        self.target.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        threads = [threading.Thread(target=self.feed, args=(s,), daemon=True) for s in self.sources]
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        except KeyboardInterrupt:
            # Let every thread finish the chunk in flight, so no file is left half-renamed.
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        if self.errors:
            raise UserError("streaming failed: " + "; ".join(self.errors))


def parse_args(argv):
    parser = job_parser("Stream CSV files into a monitored directory in chunks.")
    parser.add_argument("--input", required=True, help="the directory the monitor watches")
    parser.add_argument("files", nargs="*", help="files or globs to stream")
    parser.add_argument("--files", dest="files_option", default="", help="comma-separated files or globs")
    parser.add_argument("--rows", type=int, default=100, help="rows per chunk")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between chunks of one file")
    parser.add_argument("--loop", action="store_true", help="start again at the end of each file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.interval < 0:
        parser.error("--rows must be at least 1 and --interval not negative")
    return args


@main_guard
def main(argv=None) -> int:
    args = parse_args(argv)
    sources = [load_source(p) for p in expand(args.files + ([args.files_option] if args.files_option else []))]
    streamer = Streamer(Path(args.input), sources, args.rows, args.interval, args.loop, quiet=args.quiet)
    previous = signal.signal(signal.SIGTERM, lambda *_: streamer.stop.set())
    started = time.monotonic()
    try:
        streamer.run()
    except KeyboardInterrupt:
        streamer.stop.set()
        print("interrupted: stopping after the chunks in flight", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"streamed {streamer.rows_written} rows in {streamer.chunks_written} chunks from "
        f"{len(sources)} file(s) into {args.input} in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    exit_process(main())
