"""`siamese serve` throughput and latency against in-process search, measured in the same run.

    python benchmarks/serve.py            # 10,000 MNIST digits, 1/8/32 clients (about 1.5 minutes)
    python benchmarks/serve.py --quick    # 2,000 digits, fewer requests (under a minute)
    python benchmarks/serve.py --work DIR # keep (and on the next run reuse) the digits, model and index

What it builds (in a temporary folder, seeded): the MNIST digits of tests/data/mnist written as PNG
files (an image folder, sub-folders name the labels), a small conv autoencoder pretrained on them
for one epoch with `siamese pretrain`, and `siamese index build` over them. Then it starts the real
server, `python -m siamese serve INDEX MODEL --port 0`, as a subprocess, reads its URL from its
output and waits for GET /health.

Rows, each with 1, 8 and 32 concurrent clients on localhost (every client sends a fixed number of
requests over one keep-alive connection; the row's total is the same for every client count):

- POST /search by key, JSON {"key": K, "k": 9} (keys drawn from the index, seeded);
- POST /search by upload, a multipart form with a PNG in field `image` and field `k` = 9;
- GET /health: the same client loop against a trivial endpoint, i.e. the ceiling that HTTP, the
  framework and the load generator allow on this machine.

In-process rows, in the benchmark's own process over the same index and model (loaded the way the
server loads them, `Service.load`), one query at a time:

- `VectorIndex.search` of one vector, k=9: the baseline of the goal (served by key with 8 clients
  >= 0.25x of it);
- `Service.search` by key: what the /search route runs, without HTTP;
- embed one image + `VectorIndex.search`;
- decode an uploaded PNG + embed + search (`Service.search` of the upload's bytes): what the
  upload route runs, without HTTP; the baseline of the upload rows.

The in-process rows are measured in small blocks before every served row, so load spikes of the
shared machine hit both alike; their numbers are over all blocks.

The load generator: Python threads in this process, one per client, each with its own keep-alive
socket, sending prebuilt request bytes and reading the response by its Content-Length (a minimal
HTTP/1.1 client: http.client parses headers with the email package, several times the CPU per
request; `--client http.client` measures with it instead). Latency is the wall time of one request
at the client. The CPU seconds of the server process and of this process during each row are
reported per request, so the table shows which side bounds the number.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import queue
import random
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MNIST = ROOT / "tests" / "data" / "mnist"
URL_LINE = re.compile(r"serving .* at (http://\S+?)/?\s")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Sizes:
    items: int = 10_000  # digits written, trained on and indexed
    epochs: int = 1
    widths: tuple[int, ...] = (8, 16)  # conv channels per stage: a small model, quick to train
    clients: tuple[int, ...] = (1, 8, 32)
    key_requests: int = 4_800  # per row, split evenly among the clients
    upload_requests: int = 1_280
    health_requests: int = 4_800
    warmup: int = 50  # requests of each kind before the first row (not measured)
    search_block: int = 300  # in-process searches per block (one block before every served row)
    upload_block: int = 40  # in-process uploads per block
    distinct_keys: int = 1_000  # keys the clients cycle through
    distinct_images: int = 64  # PNG files the clients cycle through
    threads: int = 1  # torch/faiss threads, server and in-process alike
    seed: int = 0


DEFAULT = Sizes()
QUICK = Sizes(items=2_000, key_requests=960, upload_requests=320, health_requests=960, search_block=200,
              upload_block=20, distinct_keys=500)


# ---------------------------------------------------------------- setup

def read_mnist(folder: Path = MNIST) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 28, 28) and labels (n,) of the IDX files in `folder` (the t10k files shipped in
    tests/data/mnist; what `mnist-idx:DIR` reads), without importing torch."""
    def idx(name: str, header: int) -> np.ndarray:
        with gzip.open(folder / f"{name}.gz") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=header)

    images = idx("t10k-images-idx3-ubyte", 16)
    return images.reshape(-1, 28, 28), idx("t10k-labels-idx1-ubyte", 8)


def write_digits(folder: Path, n: int, seed: int = 0) -> int:
    """n MNIST digits (a seeded sample) as PNG files `folder/LABEL/NNNNN.png`."""
    from PIL import Image

    pixels, labels = read_mnist()
    chosen = np.sort(np.random.default_rng(seed).permutation(len(pixels))[:n])
    for i in chosen:
        (folder / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).save(folder / str(labels[i]) / f"{i:05d}.png")
    return len(chosen)


def siamese_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "siamese", *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def build(work: Path, sizes: Sizes) -> tuple[Path, Path, Path]:
    """The image folder, the model and the index, made with the command line as a user would."""
    digits, model, index = work / "digits", work / "model", work / "index"
    if not digits.is_dir():  # a --work folder of an earlier run keeps what it has
        write_digits(digits, sizes.items, sizes.seed)
    threads = str(max(2, sizes.threads))
    if not (model / "model.safetensors").is_file():
        siamese_cli("pretrain", str(digits), "--out", str(model), "--arch", "conv", "--widths",
                    *map(str, sizes.widths), "--epochs", str(sizes.epochs), "--seed", str(sizes.seed),
                    "--threads", threads, "-q")
    if not (index / "manifest.json").is_file():
        siamese_cli("index", "build", str(model), str(digits), "--out", str(index), "--threads", threads, "-q")
    return digits, model, index


# ---------------------------------------------------------------- the server

class Server:
    """`python -m siamese serve INDEX MODEL --port 0` as a subprocess; its URL read from its output.
    Starts at once; `wait_ready` waits until it answers."""

    def __init__(self, index: Path, model: Path, threads: int, timeout: float = 120.0) -> None:
        argv = [sys.executable, "-m", "siamese", "serve", str(index), str(model), "--port", "0",
                "--map", "pca", "--threads", str(threads)]
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, bufsize=1)
        self.output: list[str] = []
        found = threading.Event()
        self.url = ""

        def read() -> None:
            for line in self.process.stdout:
                self.output.append(line)
                match = URL_LINE.search(line)
                if match and not found.is_set():
                    self.url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        self._found, self._timeout = found, timeout

    def wait_ready(self) -> Server:
        """Wait for the URL line and a 200 from GET /health (the process loads in the meantime)."""
        if not self._found.wait(self._timeout) or not self.url:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "".join(self.output))
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)
        deadline = time.monotonic() + self._timeout
        while True:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return self
            except OSError:
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("the server never answered GET /health:\n" + "".join(self.output))
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """user + system CPU seconds of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)  # Ctrl-C: uvicorn shuts down gracefully
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------- requests and the load generator

def json_request(host: str, port: int, path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def upload_request(host: str, port: int, path: str, png: bytes, k: int, name: str = "query.png") -> bytes:
    boundary = "----siamese-benchmark-7f3a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n{k}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get_request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


class RawClient:
    """One keep-alive HTTP/1.1 connection: sends prebuilt request bytes, reads one response by its
    Content-Length. About as little client CPU per request as Python allows."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def call(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        data = self.pending
        end = data.find(b"\r\n\r\n")
        while end < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
            end = data.find(b"\r\n\r\n")
        head = data[:end].lower() + b"\r\n"
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            raise ConnectionError("a response without Content-Length")
        length = int(head[at + 17:head.index(b"\r\n", at + 17)])
        body_start = end + 4
        while len(data) - body_start < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        self.pending = data[body_start + length:]
        return int(data[9:12]), data[body_start:body_start + length]

    def close(self) -> None:
        self.sock.close()


class HttpClient:
    """The same with the standard library's http.client (parses every response header in Python)."""

    def __init__(self, host: str, port: int) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=60)
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, request: bytes) -> tuple[int, bytes]:
        head, body = request.split(b"\r\n\r\n", 1)  # the same prebuilt bytes as RawClient
        first, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = first.split(" ")
        headers = dict(line.split(": ", 1) for line in header_lines)
        self.connection.request(method, path, body=body or None, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.connection.close()


CLIENTS = {"raw": RawClient, "http.client": HttpClient}


@dataclass
class Load:
    """What one row of concurrent clients measured."""

    clients: int
    per_client: int
    latencies: np.ndarray  # seconds, one per request that answered 200
    errors: int
    wall: float  # seconds from the start signal to the last answer
    server_cpu: float = 0.0  # CPU seconds of the server process during the row
    client_cpu: float = 0.0  # CPU seconds of this process (the load generator) during the row
    first_bodies: list[bytes] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.clients * self.per_client

    @property
    def qps(self) -> float:
        return len(self.latencies) / self.wall if self.wall > 0 else 0.0


def run_load(host: str, port: int, requests: list[bytes], clients: int, per_client: int,
             client_kind: str = "raw", server: Server | None = None) -> Load:
    """`clients` threads, each on its own connection, each sending `per_client` requests (client c
    cycles through `requests` starting at c * per_client); all start together."""
    connect = CLIENTS[client_kind]
    connections = [connect(host, port) for _ in range(clients)]
    latencies = [np.zeros(per_client) for _ in range(clients)]
    statuses = [np.zeros(per_client, dtype=np.int32) for _ in range(clients)]
    first: list[bytes] = [b""] * clients
    failures: list[Exception | None] = [None] * clients
    start = threading.Barrier(clients + 1)
    ends = [0.0] * clients

    def client(c: int) -> None:
        connection, mine, codes = connections[c], latencies[c], statuses[c]
        offset = c * per_client
        start.wait()
        try:
            for i in range(per_client):
                request = requests[(offset + i) % len(requests)]
                t0 = time.perf_counter()
                codes[i], body = connection.call(request)
                mine[i] = time.perf_counter() - t0
                if i == 0:
                    first[c] = body
        except (OSError, ValueError, http.client.HTTPException) as exc:  # reported after the row
            failures[c] = exc
        ends[c] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for thread in threads:
        thread.start()
    cpu0, server0 = _own_cpu(), server.cpu_seconds() if server else 0.0
    begin = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    wall = max(ends) - begin
    cpu1, server1 = _own_cpu(), server.cpu_seconds() if server else 0.0
    for connection in connections:
        connection.close()
    if any(failures):
        raise RuntimeError(f"a client failed: {next(f for f in failures if f)!r}")
    codes = np.concatenate(statuses)
    times = np.concatenate(latencies)
    return Load(clients, per_client, times[codes == 200], int((codes != 200).sum()), wall,
                server1 - server0, cpu1 - cpu0, first)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- in-process

@dataclass
class Timings:
    """Per-call wall times of one in-process measure, gathered over several blocks."""

    seconds: list[float] = field(default_factory=list)

    def add(self, values) -> None:
        self.seconds.extend(values)

    @property
    def qps(self) -> float:
        return len(self.seconds) / sum(self.seconds) if self.seconds else 0.0


def time_calls(fn, args: list, count: int, offset: int = 0) -> list[float]:
    """Wall seconds of `count` calls fn(args[i]), cycling through args from `offset`."""
    out = []
    for i in range(count):
        arg = args[(offset + i) % len(args)]
        t0 = time.perf_counter()
        fn(arg)
        out.append(time.perf_counter() - t0)
    return out


class InProcess:
    """The model and index loaded as the server loads them, and the in-process measures."""

    MEASURES = ("search", "service_key", "embed_search", "upload")

    def __init__(self, index: Path, model: Path, keys: list[str], pngs: list[bytes], threads: int) -> None:
        from siamese.serve.config import ServeConfig
        from siamese.serve.service import Query, Service
        from siamese.serve.uploads import items_from_upload
        from siamese.threads import apply_threads, choose_threads

        apply_threads(choose_threads(threads))
        self.service = Service.load(index, model, ServeConfig(map_method="pca"))
        self.index, self.model = self.service.index, self.service.model
        self.keys, self.pngs = keys, pngs
        self.vectors = [v[None, :] for v in np.asarray(self.index.get(keys), dtype=np.float32)]
        pixels = self.service.config.max_upload_pixels
        self.items = [items_from_upload(p, "query.png", self.model.preprocessing, pixels) for p in pngs]
        self._query = Query
        self.timings = {name: Timings() for name in self.MEASURES}
        self.blocks = 0

    def search(self, vector) -> None:
        self.index.search(vector, 9)

    def service_key(self, key: str) -> None:
        self.service.search(self._query(key=key), 9)

    def embed_search(self, items) -> None:
        from siamese import embed

        self.index.search(embed(self.model, items), 9)

    def upload(self, png: bytes) -> None:
        self.service.search(self._query(upload=png, name="query.png"), 9)  # what the route runs

    def block(self, sizes: Sizes) -> None:
        """One block of every measure (called before each served row)."""
        off = self.blocks * sizes.search_block
        self.timings["search"].add(time_calls(self.search, self.vectors, sizes.search_block, off))
        self.timings["service_key"].add(time_calls(self.service_key, self.keys, sizes.search_block, off))
        off = self.blocks * sizes.upload_block
        self.timings["embed_search"].add(time_calls(self.embed_search, self.items, sizes.upload_block, off))
        self.timings["upload"].add(time_calls(self.upload, self.pngs, sizes.upload_block, off))
        self.blocks += 1


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class Row:
    name: str
    clients: int | str
    requests: int
    errors: int
    qps: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float | None = None  # per request
    client_cpu_ms: float | None = None
    ratio: float | None = None  # QPS / the in-process baseline's


def percentiles_ms(seconds) -> tuple[float, float]:
    if len(seconds) == 0:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(seconds), [50, 99])
    return float(p50 * 1e3), float(p99 * 1e3)


def load_row(name: str, load: Load, baseline_qps: float | None) -> Row:
    p50, p99 = percentiles_ms(load.latencies)
    n = max(1, load.requests)
    return Row(name, load.clients, load.requests, load.errors, load.qps, p50, p99, load.server_cpu / n * 1e3,
               load.client_cpu / n * 1e3, load.qps / baseline_qps if baseline_qps else None)


def timing_row(name: str, timings: Timings, baseline_qps: float | None) -> Row:
    p50, p99 = percentiles_ms(timings.seconds)
    return Row(name, "in-process", len(timings.seconds), 0, timings.qps, p50, p99,
               ratio=timings.qps / baseline_qps if baseline_qps else None)


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def report(rows: list[Row], command: str, machine: dict) -> str:
    lines = [f"Command: `{command}`", "",
             "; ".join(f"{k} {v}" for k, v in machine.items()), "",
             ("| row | clients | requests | errors | QPS | p50 ms | p99 ms | server CPU ms/req | client CPU ms/req "
              "| x in-process |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.clients} | {r.requests} | {r.errors} | {r.qps:,.0f} | {r.p50_ms:.2f} | "
                     f"{r.p99_ms:.2f} | {_cell(r.server_cpu_ms, '.2f')} | {_cell(r.client_cpu_ms, '.2f')} | "
                     f"{_cell(r.ratio, '.2f')} |")
    return "\n".join(lines)


def thread_round_trip_us(n: int = 2000) -> float:
    """Mean wall microseconds for one hand-off to another thread and back (two wake-ups): what
    every hop to a worker thread pays at least; virtual machines can make it costly."""
    there, back = queue.SimpleQueue(), queue.SimpleQueue()

    def echo() -> None:
        while (item := there.get()) is not None:
            back.put(item)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        there.put(i)
        back.get()
        times.append(time.perf_counter() - t0)
    there.put(None)
    thread.join()
    return float(np.mean(times) * 1e6)


GOAL_CLIENTS, GOAL_RATIO = 8, 0.25


def goal_line(rows: list[Row]) -> str:
    """The issue's goal: served by key with 8 clients >= 0.25x in-process per-query search."""
    row = next((r for r in rows if r.name == "POST /search by key" and r.clients == GOAL_CLIENTS), None)
    if row is None or row.ratio is None:
        return f"Goal (by key, {GOAL_CLIENTS} clients, >= {GOAL_RATIO}x in-process search): not measured in this run"
    verdict = "met" if row.ratio >= GOAL_RATIO else f"missed (needs {GOAL_RATIO / row.ratio:.1f}x the throughput)"
    return (f"Goal (by key, {GOAL_CLIENTS} clients, >= {GOAL_RATIO}x in-process search): {row.ratio:.2f}x, "
            f"{verdict}")


def machine_line(sizes: Sizes, client_kind: str) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "items": f"{sizes.items:,}", "threads": sizes.threads, "client": client_kind,
            "server": f"uvicorn {_version('uvicorn')} ({http}, {loop}), fastapi {_version('fastapi')}",
            "thread round trip (mean)": f"{thread_round_trip_us():.0f} us",
            "load average": " ".join(f"{v:.1f}" for v in os.getloadavg())}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------- the run

def check_answer(kind: str, body: bytes) -> None:
    """The first answer of every client is what the endpoint promises."""
    answer = json.loads(body)
    if kind == "health":
        assert answer == {"status": "ok"}, answer
    else:
        assert len(answer["results"]) == 9, answer


def measure(server: Server, inproc: InProcess, sizes: Sizes, client_kind: str = "raw",
            progress=lambda text: None) -> list[Row]:
    """Every served row and the in-process rows, interleaved (one in-process block per served row)."""
    host, port = server.host, server.port
    rng = random.Random(sizes.seed)
    requests = {
        "key": [json_request(host, port, "/search", {"key": key, "k": 9}) for key in inproc.keys],
        "upload": [upload_request(host, port, "/search", png, 9) for png in inproc.pngs],
        "health": [get_request(host, port, "/health")],
    }
    for reqs in requests.values():
        rng.shuffle(reqs)
    totals = {"key": sizes.key_requests, "upload": sizes.upload_requests, "health": sizes.health_requests}
    for kind, reqs in requests.items():  # warm-up: connections, lazy imports, caches
        warm = run_load(host, port, reqs, 1, sizes.warmup, client_kind)
        if warm.errors:
            raise RuntimeError(f"{kind}: {warm.errors} warm-up requests failed: {warm.first_bodies[0][:300]!r}")
    loads: dict[tuple[str, int], Load] = {}
    for kind in ("key", "upload", "health"):
        for clients in sizes.clients:
            inproc.block(sizes)
            load = run_load(host, port, requests[kind], clients, totals[kind] // clients, client_kind, server)
            for body in load.first_bodies:
                check_answer(kind, body)
            loads[kind, clients] = load
            progress(f"{kind} x{clients}: {load.qps:,.0f} QPS")
    t = inproc.timings
    base, upload_base = t["search"].qps, t["upload"].qps
    names = {"key": "POST /search by key", "upload": "POST /search by upload (PNG)", "health": "GET /health"}
    rows = [load_row(names[kind], loads[kind, c], upload_base if kind == "upload" else base)
            for kind in ("key", "upload", "health") for c in sizes.clients]
    rows += [timing_row("`VectorIndex.search`, 1 vector, k=9 (baseline of key and health rows)", t["search"], base),
             timing_row("`Service.search` by key (the route's work without HTTP)", t["service_key"], base),
             timing_row("embed 1 image + `VectorIndex.search`", t["embed_search"], upload_base),
             timing_row("decode PNG + embed + search (`Service.search` of an upload; baseline of upload rows)",
                        t["upload"], upload_base)]
    return rows


def sample_inputs(index_path: Path, digits: Path, sizes: Sizes) -> tuple[list[str], list[bytes]]:
    """Seeded keys of indexed items and PNG files of the folder for the clients to cycle through."""
    from index import VectorIndex

    index = VectorIndex.load(index_path)
    rng = np.random.default_rng(sizes.seed)
    ids = rng.choice(index.ids, size=min(sizes.distinct_keys, len(index)), replace=False)
    keys = [str(k) for k in index.keys_for_ids(ids)]
    files = sorted(digits.rglob("*.png"))
    picked = rng.choice(len(files), size=min(sizes.distinct_images, len(files)), replace=False)
    return keys, [files[i].read_bytes() for i in picked]


def run(sizes: Sizes, client_kind: str, command: str, work: Path | None = None,
        progress=lambda text: None) -> str:
    with tempfile.TemporaryDirectory(prefix="siamese-serve-bench-") as tmp:
        folder = Path(work) if work else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        digits, model, index = build(folder, sizes)
        progress(f"built {sizes.items:,} PNG digits, a model and an index in {time.perf_counter() - t0:.0f} s")
        keys, pngs = sample_inputs(index, digits, sizes)
        server = Server(index, model, sizes.threads)  # loads while this process loads the same files
        try:
            inproc = InProcess(index, model, keys, pngs, sizes.threads)
            progress(f"serving at {server.wait_ready().url}")
            rows = measure(server, inproc, sizes, client_kind, progress)
        finally:
            server.stop()
        return report(rows, command, machine_line(sizes, client_kind)) + "\n\n" + goal_line(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 digits and fewer requests")
    parser.add_argument("--items", type=int, help="digits to write and index (at most 10,000)")
    parser.add_argument("--clients", type=int, nargs="+", help="concurrent client counts (default 1 8 32)")
    parser.add_argument("--threads", type=int, help="torch/faiss threads of the server and in-process (default 1)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="raw", help="the load generator's HTTP client")
    parser.add_argument("--work", type=Path, help="keep the digits, model and index here (default: a temp folder)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    if args.items:
        sizes = replace(sizes, items=min(args.items, 10_000))
    if args.clients:
        sizes = replace(sizes, clients=tuple(args.clients))
    if args.threads:
        sizes = replace(sizes, threads=args.threads)
    command = shlex.join(["python", "benchmarks/serve.py", *(argv if argv is not None else sys.argv[1:])])
    started = time.perf_counter()
    text = run(sizes, args.client, command, args.work, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(text)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
