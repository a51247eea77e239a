"""`siamese serve` from the command line: a real server in a subprocess answers, says where it
listens, stops on Ctrl-C; careless and hostile starts end in one line, before anything is served."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from siamese.cli import main

import tiny_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tiny_workspace.shared(tmp_path_factory)


def test_the_server_says_where_it_listens_answers_and_stops_on_ctrl_c(workspace, tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "siamese", "serve", str(workspace / "index"),
                               str(workspace / "tuned"), "--port", "0", "--map", "pca",
                               "--pairs-out", str(tmp_path / "pairs.csv")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line or server.poll() is None, server.stderr.read()
            found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        assert url, "the server never said where it listens"
        with urllib.request.urlopen(url + "health", timeout=30) as response:
            assert json.load(response) == {"status": "ok"}
        request = urllib.request.Request(url + "search", data=json.dumps({"key": "1/2.png", "k": 2}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert len(json.load(response)["results"]) == 2
        rest = server.stdout.readline() + server.stdout.readline()
        assert f"labels go to {tmp_path / 'pairs.csv'}" in rest and "Ctrl-C stops" in rest
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert code == 0, server.stderr.read()
    assert server.stdout.read().strip().endswith("stopped")


@pytest.mark.parametrize("extra, words", [
    (["--port", "70000"], "--port must be between 0 and 65535"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be above 0"),
    (["--map-size", "0"], "--map-size must be between 1"),
    (["--token", " "], "--token must be 1 to 4096 visible ASCII"),
    (["--token", " abc "], "--token must be 1 to 4096 visible ASCII"),
    (["--token", "pässwörd"], "--token must be 1 to 4096 visible ASCII"),
    (["--pairs-out", " "], "--pairs-out is empty"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid"),
])
def test_bad_flags_end_in_one_line(workspace, capsys, extra, words):
    assert main(["serve", str(workspace / "index"), str(workspace / "tuned"), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_stale_index_or_a_foreign_pairs_file_is_refused(workspace, tmp_path, capsys):
    assert main(["serve", str(workspace / "index"), str(workspace / "model")]) == 2
    assert "stale index" in capsys.readouterr().err
    notes = tmp_path / "notes.csv"
    notes.write_text("name,value\n")
    assert main(["serve", str(workspace / "index"), str(workspace / "tuned"), "--pairs-out", str(notes)]) == 2
    assert "is not a pairs file" in capsys.readouterr().err and notes.read_text() == "name,value\n"


def test_index_and_model_given_the_other_way_round_are_swapped_with_a_note(workspace, capsys, caplog, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # load, then do not serve
    assert main(["serve", str(workspace / "tuned"), str(workspace / "index"), "--port", "0", "--map", "pca"]) == 0
    assert "the other way round" in caplog.text
    assert "serving 24 items (24 labelled, not calibrated)" in capsys.readouterr().out
