"""The streamer on its own: chunks, unique names, atomic renames, --loop and Ctrl-C."""

import signal
import subprocess

from streaming.streamer import mtime_ms, stamp_after

from conftest import PROJECT_ROOT, PYTHON, project_env, wait_for

SAMPLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"


def test_streamer_writes_whole_chunks_with_a_header_and_a_source_column(tmp_path):
    first = tmp_path / "a.csv"
    second = tmp_path / "b.csv"
    lines = SAMPLE.read_text().splitlines()
    first.write_text("\n".join(lines[:251]) + "\n")
    second.write_text("\n".join([lines[0], *lines[251:401]]) + "\n")
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "streaming.streamer",
            "--input",
            str(tmp_path / "in"),
            str(first),
            str(second),
            "--rows",
            "100",
            "--interval",
            "0",
        ],
        cwd=PROJECT_ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    chunks = sorted((tmp_path / "in").glob("*.csv"))
    assert len(chunks) == 3 + 2 and len({c.name for c in chunks}) == 5
    rows = 0
    for chunk in chunks:
        text = chunk.read_text().splitlines()
        assert text[0] == "timestamp,cpu,disk,network,source"
        assert all(line.endswith((",a", ",b")) for line in text[1:])
        rows += len(text) - 1
    assert rows == 250 + 150
    assert "streamed 400 rows in 5 chunks from 2 file(s)" in result.stdout
    assert not list((tmp_path / ".in.staging").glob("*"))  # every staged chunk was renamed


def test_chunks_of_one_source_reach_the_directory_in_order_even_when_written_within_a_millisecond(tmp_path):
    # given a source streamed as fast as the streamer can write (the monitor takes files in
    # modification-time order, in milliseconds)
    source = tmp_path / "host.csv"
    lines = SAMPLE.read_text().splitlines()
    source.write_text("\n".join(lines[:401]) + "\n")
    # when it is cut into 40 chunks with no interval
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "streaming.streamer",
            "--input",
            str(tmp_path / "in"),
            str(source),
            "--rows",
            "10",
            "--interval",
            "0",
            "--quiet",
        ],
        cwd=PROJECT_ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then the chunks' modification times rise strictly in the order they were cut
    assert result.returncode == 0, result.stderr
    chunks = sorted((tmp_path / "in").glob("*.csv"))  # names carry the chunk number
    assert len(chunks) == 40
    times = [mtime_ms(c) for c in chunks]
    assert all(earlier < later for earlier, later in zip(times, times[1:])), times


def test_stamp_after_waits_for_the_clock_rather_than_writing_a_future_time(tmp_path):
    chunk = tmp_path / "chunk.csv"
    chunk.write_text("timestamp,cpu\n")
    now = mtime_ms(chunk)
    assert stamp_after(chunk, None) == now  # the first chunk keeps its own time
    stamped = stamp_after(chunk, now)
    assert stamped > now and mtime_ms(chunk) == stamped


def test_ctrl_c_stops_a_looping_streamer_cleanly(tmp_path):
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "streaming.streamer",
            "--input",
            str(tmp_path / "in"),
            str(SAMPLE),
            "--rows",
            "50",
            "--interval",
            "0.05",
            "--loop",
        ],
        cwd=PROJECT_ROOT,
        env=project_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(list((tmp_path / "in").glob("*.csv"))) > 45, 60, "the streamer to loop")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "interrupted: stopping after the chunks in flight" in out and "Traceback" not in err
    for chunk in (tmp_path / "in").glob("*.csv"):
        lines = chunk.read_text().splitlines()
        # whole chunks only: 50 rows, or the file's last 2016 % 50 = 16
        assert lines[0].startswith("timestamp,") and len(lines) - 1 in (50, 16)
    assert not list((tmp_path / ".in.staging").glob("*"))
