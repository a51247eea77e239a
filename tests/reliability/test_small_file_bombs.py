"""Small files must not cause huge allocations: hostile files of a few kilobytes to a few megabytes whose
headers claim gigabytes (a 30000x30000 PNG, a GIF of thousands of frames, .npz zip bombs, .npy/.npz/IDX
headers claiming 2^44 elements, CSV fields of 131,000 characters) are refused in one line, or read lazily
within a bound, by the command line and the API.

The command-line cases run in one helper process that imports siamese once and forks a child per case;
os.wait4 gives each child's peak resident memory (ru_maxrss), which must stay below 1 GiB.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from siamese.errors import SiameseError

GIB = 1 << 30
ROOT = Path(__file__).resolve().parents[2]
DIM = 6  # input size of the tiny test model (reliability_lib.model_version)


# ---------------------------------------------------------------- hostile files, small on disk


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _zero_deflate(n: int, piece: int = 1 << 24) -> bytes:
    """A raw deflate stream of n zero bytes: one fully flushed compressed piece, repeated (no big buffer)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(piece)) + c.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(n, piece)
    return block * whole + c.compress(bytes(rest)) + c.flush()


def huge_png(path: Path, width: int, height: int) -> None:
    """An all-black 8-bit grayscale PNG written with zlib directly (the pixels never exist in memory)."""
    raw = (width + 1) * height  # a filter byte per row
    adler = ((raw % 65521) << 16) | 1  # adler32 of zeros
    body = b"\x78\xda" + _zero_deflate(raw) + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body)
                     + _png_chunk(b"IEND", b""))


def many_frame_gif(path: Path, width: int, height: int, frames: int) -> None:
    """A GIF canvas of width x height with `frames` one-pixel frames: torchvision would decode every frame
    into a whole canvas."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"  # clear, 0, end
    path.write_bytes(head + frame * frames + b"\x3b")


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def npz_member_bomb(path: Path, name: str, descr: str, shape: tuple[int, ...], nbytes: int) -> None:
    """A .npz (one deflated member, no zip64) holding an npy header plus nbytes zeros: a zip bomb when
    nbytes is large, a lying header when it is smaller than the shape."""
    head, piece = _npy_header(descr, shape), 1 << 24
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(piece)) + c.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(nbytes, piece)
    data = first + block * whole + c.compress(bytes(rest)) + c.flush()
    crc, zero = zlib.crc32(head), bytes(piece)
    for _ in range(whole):
        crc = zlib.crc32(zero, crc)
    crc = zlib.crc32(bytes(rest), crc)
    usize, fname = len(head) + nbytes, name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(data), usize, len(fname), 0) + fname
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 33, crc, len(data), usize, len(fname),
                          0, 0, 0, 0, 0, 0) + fname
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_model_dir) -> Path:
    d = tmp_path_factory.mktemp("bombs")
    np.save(d / "ok.npy", np.random.default_rng(0).standard_normal((20, DIM)).astype(np.float32))
    huge_png(d / "huge.png", 30000, 30000)
    many_frame_gif(d / "many.gif", 2000, 2000, 3000)
    npz_member_bomb(d / "bomb.npz", "x.npy", "|u1", ((2 << 30) // DIM, DIM), (2 << 30) // DIM * DIM)
    npz_member_bomb(d / "claim.npz", "x.npy", "<f4", (1 << 24, 1 << 20), 4096)
    (d / "claim.npy").write_bytes(_npy_header("<f4", (1 << 24, 1 << 20)) + bytes(4096))
    lines = ["a,b,c,d,e,f,key"] + [f"1,2,3,4,5,{i},k{i}" for i in range(2000)]
    lines[5] = "1,2,3,4,5,6," + "k" * 131_000
    (d / "longkey.csv").write_text("\n".join(lines) + "\n")
    mnist = d / "mnist"
    mnist.mkdir()
    (mnist / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 1 << 20, 1 << 12, 1 << 12) + bytes(4096))
    (mnist / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 1 << 20) + bytes(4096))
    gz = d / "mnist-gz"
    gz.mkdir()
    (gz / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(struct.pack(">IIII", 2051, 1 << 20, 64, 64)
                                                                 + bytes(1 << 20)))
    (gz / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, 1 << 20) + bytes(1 << 20)))
    (d / "labels.csv").write_text("key,label\n0,1\n1," + "x" * 131_000 + "\n")
    (d / "pairs.csv").write_text("a,b,label\n0,1,1\n0," + "9" * 131_000 + ",0\n")
    (d / "model").symlink_to(tiny_model_dir[0], target_is_directory=True)
    return d


# ---------------------------------------------------------------- the command line, one forked child per case

# name: (argv after `siamese`, expected exit status, a phrase of the one stderr line)
CASES = {
    "control": (["embed", "model", "ok.npy", "--out", "z-control.npy"], 0, None),
    "png": (["embed", "model", "huge.png", "--out", "z.npy"], 2, "--max-pixels"),
    "png --image-size": (["embed", "model", "huge.png", "--out", "z.npy", "--image-size", "8"], 2, "--max-pixels"),
    "gif of 3000 frames": (["embed", "model", "many.gif", "--out", "z.npy", "--image-size", "8"], 2, "shape"),
    "npz zip bomb": (["embed", "model", "bomb.npz", "--out", "z.npy"], 2, "convert it to .npy"),
    "npz zip bomb --limit 10": (["embed", "model", "bomb.npz", "--out", "z-limit.npy", "--limit", "10"], 0, None),
    "npy claiming 2^44": (["embed", "model", "claim.npy", "--out", "z.npy"], 2, "claims shape"),
    "npz claiming 2^44": (["embed", "model", "claim.npz", "--out", "z.npy"], 2, "claims shape"),
    "csv 131000-char key": (["embed", "model", "longkey.csv", "--out", "z.npy"], 2, "line 6"),
    "mnist idx claiming 2^44": (["embed", "model", "mnist-idx:mnist", "--out", "z.npy"], 2, "truncated"),
    "mnist idx.gz claiming 2^32": (["embed", "model", "mnist-idx:mnist-gz", "--out", "z.npy"], 2, "gunzip"),
    "LABELS.csv long field": (["index", "build", "model", "ok.npy", "--labels", "labels.csv", "--out", "idx"], 2,
                              "line 3"),
    "PAIRS.csv long field": (["calibrate", "model", "ok.npy", "--pairs", "pairs.csv"], 2, "line 3"),
}

_RUNNER = r"""
import json, os, resource, sys
os.chdir(sys.argv[1])
from siamese.cli import main
import siamese.models.checkpoint, siamese.inference.codes, siamese.retrieval.indexing, siamese.retrieval.calibration, siamese.data.loading  # import once
results = {}
for name, argv in json.loads(sys.argv[2]).items():
    err = f"stderr-{len(results)}.txt"
    pid = os.fork()
    if pid == 0:
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)
    _, status, usage = os.wait4(pid, 0)
    results[name] = [os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, open(err).read()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def cli_results(hostile) -> dict[str, list]:
    argvs = {name: case[0] for name, case in CASES.items()}
    run = subprocess.run([sys.executable, "-c", _RUNNER, str(hostile), json.dumps(argvs)], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [n for n in CASES if n != "control"])
def test_cli_refuses_or_bounds_small_hostile_files(name, cli_results, hostile, tally):
    tally["fuzz_cases"] += 1
    _, expected, phrase = CASES[name]
    code, peak, stderr = cli_results[name]
    lines = stderr.strip().splitlines()
    assert code == expected, f"{name}: exit {code}, stderr {stderr[:500]!r}"
    if expected == 2:
        tally["rejected"] += 1
        assert len(lines) == 1 and lines[0].startswith("siamese: error:"), stderr[:500]
        assert phrase in lines[0], lines[0][:500]
        assert len(lines[0]) < 600, "the error line quotes the hostile field"
    control = cli_results["control"][1]
    assert peak < GIB, f"{name}: peak resident memory {peak / 2**20:.0f} MiB"
    assert peak < control + 256 * 2**20, f"{name}: {peak / 2**20:.0f} MiB, control {control / 2**20:.0f} MiB"


def test_npz_bomb_with_limit_reads_only_the_rows_needed(cli_results, hostile):
    assert cli_results["npz zip bomb --limit 10"][0] == 0
    assert np.load(hostile / "z-limit.npy").shape == (10, 3)


# ---------------------------------------------------------------- the API


def test_api_refuses_in_one_line(hostile, tally):
    from siamese import load_items
    from siamese.data.labels import read_labels_csv
    from siamese.data.pairs import read_pairs_csv

    calls = {
        "png": lambda: load_items(hostile / "huge.png", image_size=8),
        "npy": lambda: load_items(hostile / "claim.npy"),
        "npz": lambda: load_items(hostile / "claim.npz"),
        "npz bomb": lambda: load_items(hostile / "bomb.npz"),
        "csv": lambda: load_items(hostile / "longkey.csv"),
        "labels": lambda: read_labels_csv(hostile / "labels.csv"),
        "pairs": lambda: read_pairs_csv(hostile / "pairs.csv", ["0", "1"]),
    }
    for name, call in calls.items():
        tally["fuzz_cases"] += 1
        with pytest.raises(SiameseError) as err:
            call()
        tally["rejected"] += 1
        assert "\n" not in str(err.value) and len(str(err.value)) < 600, (name, str(err.value)[:300])
    assert len(load_items(hostile / "bomb.npz", limit=10)) == 10


def test_max_pixels_is_a_bound_the_caller_sets(tmp_path):
    from PIL import Image

    from siamese import load_items

    Image.fromarray(np.full((100, 120), 7, np.uint8)).save(tmp_path / "a.png")
    assert load_items(tmp_path / "a.png").item_shape == (1, 100, 120)
    for size in (None, 8):  # refused from the header, whether or not the image is to be resized
        with pytest.raises(SiameseError, match="--max-pixels"):
            load_items(tmp_path / "a.png", max_pixels=11_999, image_size=size)
    assert load_items(tmp_path / "a.png", max_pixels=12_000).item_shape == (1, 100, 120)


def test_only_the_first_frame_of_an_animated_image_is_decoded(hostile, tmp_path):
    from PIL import Image

    from siamese.data.sources.image_decode import decode_image_file

    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (40, 120, 200)]
    for ext in ("gif", "png", "webp"):  # GIF, APNG, animated WebP
        path = tmp_path / f"anim.{ext}"
        frames[0].save(path, save_all=True, append_images=frames[1:], **({"lossless": True} if ext == "webp" else {}))
        img = decode_image_file(path, 3)
        assert img.shape == (3, 20, 30), ext
        assert abs(float(img.mean()) - 40) < 3, f"{ext}: not the first frame"
    assert decode_image_file(hostile / "many.gif", 1).shape == (1, 2000, 2000)
