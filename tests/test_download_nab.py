"""The NAB downloader against a local HTTP server on 127.0.0.1 (tests never download)."""

import functools
import http.server
import threading

import pytest

from training import download_nab


@pytest.fixture
def nab_server(nab_dir):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(nab_dir))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_fetches_every_series_and_the_labels(nab_server, nab_dir, tmp_path):
    code = download_nab.main(["--base-url", nab_server, "--dest", str(tmp_path / "nab")])
    assert code == 0
    for stem in download_nab.SERIES:
        got = tmp_path / "nab" / "data" / "realAWSCloudwatch" / f"{stem}.csv"
        assert got.read_bytes() == (nab_dir / "data" / "realAWSCloudwatch" / f"{stem}.csv").read_bytes()
    assert (tmp_path / "nab" / "labels" / "combined_windows.json").exists()
    assert not list((tmp_path / "nab").rglob("*.part"))


def test_a_missing_file_on_the_server_is_a_clear_error(nab_server, tmp_path, capsys):
    code = download_nab.main(["--base-url", f"{nab_server}/nowhere", "--dest", str(tmp_path / "nab")])
    err = capsys.readouterr().err
    assert code == 2 and "HTTP 404" in err and "Traceback" not in err


def test_an_unreachable_server_is_a_clear_error(tmp_path, capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = download_nab.main(["--base-url", f"http://127.0.0.1:{port}", "--dest", str(tmp_path / "nab")])
    assert code == 2 and "download of http://127.0.0.1" in capsys.readouterr().err
