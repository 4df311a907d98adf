"""The streamer on its own: chunks, unique names, atomic renames, --loop and Ctrl-C."""

import signal
import subprocess

from conftest import PROJECT_ROOT, PYTHON, project_env, wait_for

SAMPLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"


def test_streamer_writes_whole_chunks_with_a_header_and_a_source_column(tmp_path):
    first = tmp_path / "a.csv"
    second = tmp_path / "b.csv"
    lines = SAMPLE.read_text().splitlines()
    first.write_text("\n".join(lines[:251]) + "\n")
    second.write_text("\n".join([lines[0], *lines[251:401]]) + "\n")
    result = subprocess.run([PYTHON, "-m", "streaming.streamer", "--input", str(tmp_path / "in"), str(first),
                             str(second), "--rows", "100", "--interval", "0"], cwd=PROJECT_ROOT,
                            env=project_env(), capture_output=True, text=True, timeout=120)
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


def test_ctrl_c_stops_a_looping_streamer_cleanly(tmp_path):
    process = subprocess.Popen([PYTHON, "-m", "streaming.streamer", "--input", str(tmp_path / "in"), str(SAMPLE),
                                "--rows", "50", "--interval", "0.05", "--loop"], cwd=PROJECT_ROOT,
                               env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
