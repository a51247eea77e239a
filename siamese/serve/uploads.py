"""Uploaded images as items: the bytes are recognised by their signature (not by a client's file
name), written to a private temporary file and read by the same loader as image folders, so the
pixel limit, decoding and the model's preprocessing are exactly those of `siamese query`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..data.loading import ItemSet, load_items
from ..errors import SiameseError
from .errors import RequestError

SIGNATURES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
              (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
KINDS = "PNG, JPEG, GIF, WebP, BMP or TIFF"


def image_suffix(data: bytes) -> str | None:
    """The file suffix of an image's bytes, from their signature; None when they are no image we read."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in SIGNATURES if data.startswith(magic)), None)


def items_from_upload(data: bytes, name: str, preprocessing, max_pixels: int) -> ItemSet:
    """One uploaded image as an ItemSet of one item keyed `name`, through the model's preprocessing;
    an image of more than `max_pixels` is refused from its header, before it is decoded."""
    if not data:
        raise RequestError(f"the upload {name[:80]!r} is empty; send an image file ({KINDS})")
    suffix = image_suffix(data)
    if suffix is None:
        raise RequestError(f"the upload {name[:80]!r} is not an image this server reads; send {KINDS}")
    with tempfile.TemporaryDirectory(prefix="siamese-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            items = load_items([str(path)], preprocessing=preprocessing, on_error="raise", max_pixels=max_pixels)
        except SiameseError as exc:  # the loader's words name a temporary file and CLI flags: keep what went wrong
            detail = str(exc).split(";")[0].replace(f"image {path}", "it").replace(str(path), "it")
            raise RequestError(f"cannot read the upload {name[:80]!r}: {detail}; send a whole {KINDS} image of at "
                               f"most {max_pixels:,} pixels") from None
    return ItemSet(x=items.x, keys=[name], labels=None, normalization=items.normalization, source="upload",
                   resize=items.resize)
