"""The page of `siamese serve` in a real (headless) Chromium against the real server: a small MNIST
workspace is trained and indexed, `python -m siamese serve` runs as a subprocess (with a token and
--pairs-out), and the test uploads a digit, clicks a point of the map and labels three pairs.

Screenshots go to the test's tmp folder and, when SIAMESE_SCREENSHOTS names a folder, there too.
Skipped when playwright is not installed or no Chromium is found (SIAMESE_CHROMIUM may name one).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "tests" / "data" / "mnist"
TINY = ["--widths", "4", "8", "--latent-dim", "4", "--epochs", "2", "--batch-size", "8", "-q"]
TOKEN = "browser-test-token"
N_ITEMS = 200
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    candidates = [os.environ.get("SIAMESE_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (/usr/bin/chromium, chromium, chromium-browser "
                       "or google-chrome on PATH, or SIAMESE_CHROMIUM)"),
    pytest.mark.skipif(not MNIST.is_dir(), reason="tests/data/mnist absent"),
]


# ---------------------------------------------------------------- the workspace and the server

def build_workspace(root: Path) -> dict[str, Path]:
    """digits/NNN.png (200 MNIST digits), labels.csv for every other one, a tiny model and its index."""
    import torch
    from torchvision.io import write_png

    from siamese.cli import main
    from siamese.data.sources.datasets import read_idx

    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz", 2051)[:N_ITEMS]
    digits = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz", 2049)[:N_ITEMS]
    folder = root / "digits"
    folder.mkdir()
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "label"])
        for i, (image, digit) in enumerate(zip(images, digits)):
            write_png(torch.from_numpy(image.copy())[None], str(folder / f"{i:03d}.png"))
            if i % 2 == 0:  # half unlabelled: the server proposes pairs only where a label is missing
                writer.writerow([f"{i:03d}.png", int(digit)])
    model, index = root / "model", root / "digits-index"
    assert main(["pretrain", str(folder), "--out", str(model), *TINY]) == 0
    assert main(["index", "build", str(model), str(folder), "--labels", str(root / "labels.csv"),
                 "--out", str(index), "-q"]) == 0
    return {"digits": folder, "model": model, "index": index, "pairs": root / "pairs.csv"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m siamese serve` in a subprocess, with the test's token."""

    def __init__(self, workspace: dict[str, Path], logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out, self.err = logs / "serve.out", logs / "serve.err"
        env = {**os.environ, "SIAMESE_SERVE_TOKEN": TOKEN}
        # run from the project root: `python -m` puts the working directory first on sys.path
        with open(self.out, "w") as out, open(self.err, "w") as err:  # the child keeps its own copies
            self.process = subprocess.Popen(
                [sys.executable, "-m", "siamese", "serve", str(workspace["index"]), str(workspace["model"]),
                 "--port", str(self.port), "--pairs-out", str(workspace["pairs"])],
                cwd=ROOT, env=env, stdout=out, stderr=err)

    def output(self) -> str:
        return f"--- stdout\n{self.out.read_text()}\n--- stderr\n{self.err.read_text()}"

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"siamese serve exited with {self.process.returncode}\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        pytest.fail(f"siamese serve did not answer /health within {timeout:g} s\n{self.output()}")

    def api(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    return build_workspace(tmp_path_factory.mktemp("serve-browser"))


@pytest.fixture
def server(workspace, tmp_path):
    server = Server(workspace, tmp_path)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- the page

class Shots:
    """Numbered screenshots in the tmp folder and in $SIAMESE_SCREENSHOTS when it is set."""

    def __init__(self, page, tmp_path: Path) -> None:
        self.page, self.folders, self.n = page, [tmp_path / "screenshots"], 0
        if os.environ.get("SIAMESE_SCREENSHOTS"):
            self.folders.append(Path(os.environ["SIAMESE_SCREENSHOTS"]))
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> None:
        self.n += 1
        first = self.folders[0] / f"{self.n}-{name}.png"
        self.page.screenshot(path=str(first), full_page=True)
        for folder in self.folders[1:]:
            shutil.copyfile(first, folder / first.name)


RESULTS_LOADED = """() => {
  const images = [...document.querySelectorAll('#results .result img')];
  return images.length === 9 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


def isolated_point(points: list[dict], margin: float = 24.0) -> dict:
    """A map point with no other point within `margin` CSS pixels (so a click there cannot hit another)."""
    def clearance(p):
        return min(math.hypot(p["x"] - q["x"], p["y"] - q["y"]) for q in points if q is not p)
    best = max(points, key=clearance)
    assert clearance(best) >= margin / 2, "the map's points are too crowded to click one reliably"
    candidates = [p for p in points if clearance(p) >= margin]
    return candidates[len(candidates) // 2] if candidates else best


def test_page_searches_maps_and_labels_pairs_in_a_real_browser(server, workspace, tmp_path):
    keys = {p.name for p in workspace["digits"].iterdir()}
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # a high-DPI screen: the map must still map clicks to the right point
            context = browser.new_context(viewport={"width": 1360, "height": 960}, device_scale_factor=2)
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error" and "401" not in msg.text else None)
            shots = Shots(page, tmp_path)

            def no_error_banner(when: str) -> None:
                banner = page.locator("#error")
                assert banner.is_hidden(), f"{when}: error banner shows {page.text_content('#error-text')!r}"

            # the token: every API request is refused until the page asks for it
            page.goto(server.url + "/")
            page.wait_for_selector("#token-form", state="visible")
            shots("token")
            page.fill("#token", TOKEN)
            page.press("#token", "Enter")
            page.wait_for_selector("#token-form", state="hidden")
            page.wait_for_function("() => document.querySelector('#info').textContent.includes('200 items')")
            page.wait_for_selector("#map[data-ready]")
            page.wait_for_function("() => !document.querySelector('#same').disabled")
            no_error_banner("after loading")
            info = page.text_content("#info")
            assert "not calibrated" in info and "100 labelled" in info, info

            # search by an upload: the digit's own item comes first
            upload = workspace["digits"] / "017.png"
            page.set_input_files("#upload", str(upload))
            page.wait_for_function(RESULTS_LOADED)
            page.wait_for_function("() => document.querySelector('#query img').naturalWidth > 0")
            result_keys = page.locator("#results .result .key").all_text_contents()
            assert len(result_keys) == 9 and set(result_keys) <= keys, result_keys
            assert result_keys[0] == upload.name, result_keys
            distances = [float(t) for t in page.locator("#results .result .distance").all_text_contents()]
            assert distances == sorted(distances) and distances[0] < 1e-3, distances
            no_error_banner("after the upload")
            shots("upload")

            # click a point of the map: its neighbours replace the results
            api_map = server.api("/map")
            points = page.evaluate("() => window.siameseServe.mapPoints()")
            assert {p["key"] for p in points} == {p["key"] for p in api_map["points"]} <= keys
            point = isolated_point(points)
            alpha = page.evaluate("""([x, y]) => {
              const canvas = document.querySelector('#map');
              const ratio = canvas.width / canvas.clientWidth;
              return canvas.getContext('2d').getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data[3];
            }""", [point["x"], point["y"]])
            assert alpha > 0, f"nothing drawn where the page says {point['key']} is"
            box = page.locator("#map").bounding_box()
            page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
            page.wait_for_selector("#map-tip", state="visible")
            assert point["key"] in page.text_content("#map-tip")
            page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
            page.wait_for_function("(key) => document.querySelector('#query .key')?.textContent === key",
                                   arg=point["key"])
            page.wait_for_function("(key) => document.querySelector('#results-status').textContent.endsWith(key)",
                                   arg=point["key"])
            page.wait_for_function(RESULTS_LOADED)
            expected = [r["key"] for r in server.api("/search", {"key": point["key"], "k": 9})["results"]]
            assert page.locator("#results .result .key").all_text_contents() == expected
            assert point["key"] not in expected
            no_error_banner("after the map click")
            shots("map-click")

            # label three pairs: a click, the keyboard, a click
            chosen = []
            for n, (how, label) in enumerate([("click", 1), ("key", 0), ("click", 1)], start=1):
                a, b = page.text_content("#pair-a .key"), page.text_content("#pair-b .key")
                assert a in keys and b in keys and a != b, (a, b)
                if how == "click":
                    page.click("#same" if label else "#different")
                else:
                    page.keyboard.press("s" if label else "d")
                chosen.append([a, b, str(label)])
                page.wait_for_function("(n) => document.querySelector('#labelled-count').textContent === String(n)",
                                       arg=n)
                page.wait_for_function("() => !document.querySelector('#same').disabled")
                no_error_banner(f"after labelling pair {n}")
            assert page.text_content("#labelled-count") == "3"
            shots("labelled")

            # the drop zone: Enter on it opens the file dialog (the input's click, stopped here: headless
            # Chromium's dialog interception is not reliable enough for a test); a dropped file is searched
            page.evaluate("""() => document.querySelector('#upload').addEventListener('click', (event) => {
              event.preventDefault();
              document.body.dataset.fileDialog = 'opened';
            }, { once: true })""")
            page.focus("#drop")
            page.keyboard.press("Enter")
            page.wait_for_selector("body[data-file-dialog='opened']", state="attached")
            dropped = workspace["digits"] / "123.png"
            page.evaluate("""([name, bytes]) => {
              const transfer = new DataTransfer();
              transfer.items.add(new File([new Uint8Array(bytes)], name, { type: 'image/png' }));
              const drop = document.querySelector('#drop');
              for (const type of ['dragenter', 'dragover', 'drop']) {
                drop.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
              }
            }""", [dropped.name, list(dropped.read_bytes())])
            page.wait_for_function("() => document.querySelector('#results .result .key')?.textContent === '123.png'")
            page.wait_for_function(RESULTS_LOADED)
            assert page.text_content("#query .key") == "123.png"
            no_error_banner("after the drop")

            # the narrow layout stacks the columns
            page.set_viewport_size({"width": 420, "height": 900})
            page.wait_for_timeout(200)
            no_error_banner("at the end")
            shots("narrow")
            context.close()
        finally:
            browser.close()

    assert not problems, "\n".join(problems)
    with open(workspace["pairs"], newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["a", "b", "label"], rows
    assert rows[1:] == chosen, (rows, chosen)
    assert all(a in keys and b in keys for a, b, _ in rows[1:])
