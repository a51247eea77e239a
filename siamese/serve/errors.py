"""Request errors with the HTTP status they are answered with (the message says what to do)."""

from __future__ import annotations

from ..errors import SiameseError


class RequestError(SiameseError):
    """A request the server cannot answer as asked: 422 unless a subclass says otherwise."""

    status = 422


class Unauthorized(RequestError):
    status = 401


class ReadOnly(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409


class TooLarge(RequestError):
    status = 413


class UnsupportedType(RequestError):
    status = 415
