"""Every setting of `siamese serve`, with its default (the CLI reads its defaults from here)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENVIRONMENT = "SIAMESE_SERVE_TOKEN"
MAP_METHODS = ("tsne", "pca")
MAX_MAP_SIZE = 100_000


@dataclass(frozen=True)
class ServeConfig:
    """How the server listens, what it may write and how much it does per request."""

    host: str = "127.0.0.1"
    port: int = 8000
    pairs_out: Path | None = None  # PAIRS.csv labels are appended to; None = read-only
    token: str | None = None  # bearer token every API request must carry
    untrusted: bool = False  # load the index with the checks for files from elsewhere
    max_upload_mb: float = 16.0  # bytes of one request body
    max_upload_pixels: int = 40_000_000  # an uploaded image's pixels (a 40 MP photo decodes to ~0.5 GB of floats)
    max_k: int = 100  # most neighbours one request may ask for
    map_size: int = 2000  # most items drawn on the 2-D map (a seeded sample of bigger indexes)
    map_method: str = "tsne"
    pair_candidates: int = 2000  # items whose neighbours are considered for pair proposals
    seed: int = 0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def read_only(self) -> bool:
        return self.pairs_out is None


def is_loopback(host: str) -> bool:
    """Whether `host` (a --host value) is this machine only: localhost or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
