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


def test_download_fetches_every_category_and_the_labels(nab_server, nab_dir, tmp_path):
    import json

    # when the whole corpus is downloaded from a server laid out like NAB's repository
    code = download_nab.main(["--base-url", nab_server, "--dest", str(tmp_path / "nab")])
    assert code == 0
    # then every series of every category arrives byte for byte, as a NAB root
    for category, stems in download_nab.CORPUS.items():
        for stem in stems:
            relative = f"data/{category}/{stem}.csv"
            assert (tmp_path / "nab" / relative).read_bytes() == (nab_dir / relative).read_bytes(), relative
    got = sorted(p.relative_to(tmp_path / "nab") for p in (tmp_path / "nab" / "data").rglob("*.csv"))
    assert got == sorted(p.relative_to(nab_dir) for p in (nab_dir / "data").rglob("*.csv"))
    # with the label windows of every category
    labels = json.loads((tmp_path / "nab" / "labels" / "combined_windows.json").read_text())
    assert labels == json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    assert not list((tmp_path / "nab").rglob("*.part"))


def test_download_of_named_categories_keeps_their_labels_only(nab_server, tmp_path):
    import json

    code = download_nab.main(
        ["--base-url", nab_server, "--dest", str(tmp_path / "nab"), "--categories", "realAWSCloudwatch,realTraffic"]
    )
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "nab" / "data").iterdir()) == ["realAWSCloudwatch", "realTraffic"]
    labels = json.loads((tmp_path / "nab" / "labels" / "combined_windows.json").read_text())
    assert labels and {key.split("/", 1)[0] for key in labels} == {"realAWSCloudwatch", "realTraffic"}


def test_an_unknown_category_is_a_clear_error(tmp_path, capsys):
    code = download_nab.main(["--dest", str(tmp_path / "nab"), "--categories", "realAWS"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown NAB categories: realAWS; choose from" in err and "Traceback" not in err
    assert not (tmp_path / "nab").exists()


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
