"""Decoding one image file to a (C, H, W) float32 tensor in 0..255, header peeks, and gray/RGB conversion.

torchvision decodes png/jpeg/gif/webp; PIL handles the rest and reads headers without decoding pixels.
Before anything is decoded, the dimensions in the file's header are checked against a pixel limit
(--max-pixels): a compressed image can claim billions of pixels in a few hundred kilobytes. Only the first
frame of an animated image is decoded.
"""

from __future__ import annotations

import struct
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from ...errors import SiameseError
from ..limits import MAX_PIXELS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_PIL_ONLY = (".bmp", ".tif", ".tiff")  # torchvision's decoder handles png/jpeg/gif/webp only
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_PIL_LIMIT = threading.Lock()  # guards the moment PIL's own pixel limit is raised to ours

Read = Callable[[int, int], bytes]  # (offset, size) -> up to size bytes of the file


def to_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(..., C, H, W) -> (..., channels, H, W): drops alpha, RGB->luminance, gray->RGB."""
    c = x.shape[-3]
    if channels is None or c == channels:
        return x
    if c in (2, 4):
        x, c = x[..., : c - 1, :, :], c - 1
    if c == channels:
        return x
    if channels == 1 and c == 3:
        return TF.rgb_to_grayscale(x)
    if channels == 3 and c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    raise SiameseError(f"cannot convert images with {c} channels to {channels}; leave --channels out or use "
                       "grey or RGB images")


@contextmanager
def quiet_torchvision() -> Iterator[None]:
    """torchvision 0.29 deprecates its image decoders with a warning per call; keep logs readable."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        yield


def _jpeg_size(read: Read) -> tuple[int, int] | None:
    """(H, W) from the first SOFn segment, hopping over the segments before it."""
    pos = 2
    while True:
        marker = read(pos, 4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte
            pos += 1
        elif kind == 0x01 or 0xD0 <= kind <= 0xD8:  # markers without a length
            pos += 2
        elif 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            frame = read(pos + 5, 4)
            return struct.unpack(">HH", frame) if len(frame) == 4 else None
        else:
            pos += 2 + struct.unpack(">H", marker[2:])[0]


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """(H, W) of a lossy (VP8), lossless (VP8L) or extended (VP8X: the canvas of every frame) WebP."""
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        w, h = struct.unpack_from("<HH", head, 26)
        return h & 0x3FFF, w & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[27:30], "little") + 1, int.from_bytes(head[24:27], "little") + 1
    return None


def _tiff_size(read: Read, head: bytes) -> tuple[int, int] | None:
    """(H, W) of the first page: tags 256/257 of the first IFD (classic TIFF only)."""
    order = "<" if head[:2] == b"II" else ">"
    if struct.unpack_from(order + "H", head, 2)[0] != 42:
        return None
    ifd = struct.unpack_from(order + "I", head, 4)[0]
    count = read(ifd, 2)
    if len(count) < 2:
        return None
    entries = read(ifd + 2, 12 * struct.unpack(order + "H", count)[0])
    found = {}
    for at in range(0, len(entries) - 11, 12):
        tag, kind = struct.unpack_from(order + "HH", entries, at)
        if tag in (256, 257):
            found[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), entries, at + 8)[0]
    return (found[257], found[256]) if len(found) == 2 else None


def image_dimensions(read: Read) -> tuple[int, int] | None:
    """(H, W) from the header of a png/gif/jpeg/webp/bmp/tiff file (for GIF and animated WebP: the canvas),
    found without decoding; None for a header this does not know (PIL's lazy open then tells)."""
    head = read(0, 32)
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            w, h = struct.unpack_from(">II", head, 16)
            return h, w
        if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
            w, h = struct.unpack_from("<HH", head, 6)
            return h, w
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(read)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_size(head)
        if head[:2] == b"BM" and len(head) >= 26:
            if struct.unpack_from("<I", head, 14)[0] == 12:  # OS/2 core header: 16-bit sizes
                w, h = struct.unpack_from("<HH", head, 18)
                return h, w
            w, h = struct.unpack_from("<ii", head, 18)
            return abs(h), abs(w)
        if head[:2] in (b"II", b"MM") and len(head) >= 8:
            return _tiff_size(read, head)
    except struct.error:  # a truncated header: the decoder names the problem
        return None
    return None


def check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an image whose header claims more than max_pixels, before any pixel is decoded."""
    h, w = size
    if h * w > max_pixels:
        raise SiameseError(f"image {path} is {w}x{h} ({h * w:,} pixels), more than the limit of {max_pixels:,} "
                           f"pixels (a decompression bomb?); pass --max-pixels {h * w} to decode it anyway")


def _file_read(f: Any) -> Read:
    def read(offset: int, size: int) -> bytes:
        f.seek(offset)
        return f.read(size)

    return read


def _gif_first_frame(data: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The GIF cut after its first image (trailer appended) and that image's (H, W): torchvision
    decodes every frame into one (N, C, H, W) tensor of whole canvases, so many tiny frames in a small
    file would cost N canvases."""
    buf = memoryview(data)

    def after_sub_blocks(pos: int) -> int:
        while buf[pos]:
            pos += buf[pos] + 1
        return pos + 1

    try:
        flags, pos = buf[10], 13
        pos += 3 << ((flags & 7) + 1) if flags & 0x80 else 0  # global colour table
        while buf[pos] == 0x21:  # extension blocks: introducer, label, sub-blocks
            pos = after_sub_blocks(pos + 2)
        if buf[pos] != 0x2C:
            return data, (0, 0)
        w, h = struct.unpack_from("<HH", buf, pos + 5)
        local = buf[pos + 9]
        pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
        end = after_sub_blocks(pos + 1)  # + the LZW minimum code size
    except (IndexError, struct.error):  # truncated: the decoder reports it
        return data, (0, 0)
    return np.concatenate([data[:end], np.array([0x3B], np.uint8)]), (h, w)


@contextmanager
def _pil_image(path: Path, max_pixels: int) -> Iterator[Any]:
    """PIL's lazy open with our pixel limit in charge: PIL's own (lower) limit is raised to max_pixels while
    the file is opened when --max-pixels asked for more, and its warning is silenced below the limit."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _PIL_LIMIT:
            saved = Image.MAX_IMAGE_PIXELS
            if saved is not None and max_pixels > saved:
                Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with im:
            check_pixels(path, (im.height, im.width), max_pixels)
            yield im


def peek_image(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[bool, tuple[int, int]]:
    """(is_grayscale, (H, W)) from the file header only (PIL opens lazily; pixels are not decoded);
    refuses an image above max_pixels."""
    with open(path, "rb") as f:
        size = image_dimensions(_file_read(f))
    if size is not None:
        check_pixels(path, size, max_pixels)
    with _pil_image(path, max_pixels) as im:
        gray = im.mode in _GRAY_MODES
        if im.mode in ("P", "PA") and im.palette is not None:  # palette images: gray iff every entry is gray
            k = len(im.palette.mode)
            pal = np.frombuffer(bytes(im.palette.palette), np.uint8)
            pal = pal[: len(pal) // k * k].reshape(-1, k)
            gray = bool(np.all(pal[:, 0] == pal[:, 1]) and np.all(pal[:, 1] == pal[:, 2]))
        return gray, (im.height, im.width)


def decode_image_file(path: Path, channels: int, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Decode the first frame of one image file to (channels, H, W) float32 in 0..255, after checking the
    dimensions in its header against max_pixels."""
    data = np.fromfile(path, dtype=np.uint8)  # the whole file: what it holds, not what it claims
    view = memoryview(data)
    size = image_dimensions(lambda offset, n: bytes(view[offset:offset + n]))
    if size is None:  # a header the parser does not know: PIL's lazy open measures (and checks) it
        with _pil_image(path, max_pixels) as im:
            size = (im.height, im.width)
    check_pixels(path, size, max_pixels)
    animated_webp = len(data) > 20 and view[:4] == b"RIFF" and view[12:16] == b"VP8X" and bool(data[20] & 0x02)
    if path.suffix.lower() in _PIL_ONLY or animated_webp:  # PIL decodes the first frame only
        with _pil_image(path, max_pixels) as im:
            arr = np.array(im.convert("L" if channels == 1 else "RGB"))
        img = torch.from_numpy(arr)[None] if arr.ndim == 2 else torch.from_numpy(arr).permute(2, 0, 1)
    else:
        if view[:3] == b"GIF":
            data, frame = _gif_first_frame(data)
            check_pixels(path, frame, max_pixels)
        img = decode_image(torch.from_numpy(data), mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
        if img.ndim == 4:  # a GIF whose first image was not found: keep its first frame
            img = img[0]
    scale = 1 / 257 if img.dtype == torch.uint16 else None  # 16-bit PNG -> 0..255 like 8-bit images
    img = img.to(torch.float32)
    if scale is not None:
        img.mul_(scale)
    return to_channels(img, channels)  # GIF decoding ignores the mode
