"""The library's own error type: every user mistake surfaces as a SiameseError."""

import re


class SiameseError(ValueError):
    """Bad input or a file that cannot be used; the message says what to do."""


def reason(exc: BaseException) -> str:
    """First line of an exception message, so SiameseError messages stay one line."""
    text = str(exc).strip().splitlines()
    # torchvision prefixes C++ errors with "decode_image, /path/to/file.cpp:52, "
    return re.sub(r"^\w+, \S+\.cpp:\d+, ", "", text[0]) if text else type(exc).__name__
