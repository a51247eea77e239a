"""The FastAPI application over a Service: routes, the bearer token, the upload limit, errors as JSON
`{"error": ...}`, the page under `/` and the OpenAPI page under `/docs` (its assets come from the
swagger-ui-bundle package, so it works offline). The API is described in docs/serve.md."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from index.errors import VectorIndexError

from ..errors import SiameseError
from ..version import __version__
from .config import is_loopback
from .errors import RequestError, UnsupportedType
from .guards import BodyLimit, RequestGuard, error_response
from .service import Query, Service

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


# ---------------------------------------------------------------- request bodies (for the OpenAPI page)

class ItemRef(BaseModel):
    key: str | None = Field(None, description="key of an indexed item")
    vector: list[float] | None = Field(None, description="an embedding of the index's dimension")


class SearchBody(ItemRef):
    k: int = Field(9, description="how many neighbours (5 for /classify)")


class VerifyBody(BaseModel):
    a: ItemRef
    b: ItemRef


class PairBody(BaseModel):
    a: str = Field(description="key of an indexed item")
    b: str = Field(description="key of another indexed item")
    label: int = Field(description="1 same, 0 different")


def _body(model: type[BaseModel], files: tuple[str, ...] = (), k: bool = False) -> dict[str, Any]:
    """openapi_extra documenting a JSON body (and, given file fields, the multipart alternative)."""
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    if files:
        properties: dict[str, Any] = {name: {"type": "string", "format": "binary"} for name in files}
        if k:
            properties["k"] = {"type": "integer"}
        schema = {"type": "object", "properties": properties, "required": list(files)}
        content["multipart/form-data"] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}


# ---------------------------------------------------------------- reading queries

async def _form(request: Request):
    try:
        return await request.form(max_files=2, max_fields=8)
    except HTTPException as exc:
        raise RequestError(f"cannot read the form: {exc.detail}") from None


async def _json(request: Request) -> dict[str, Any]:
    """The JSON object of a request that says it is JSON (a form another site's page posts cannot be)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise UnsupportedType("send the body as JSON with `Content-Type: application/json` (or, where an image "
                              "is asked for, a multipart form)")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RequestError("the body is not valid JSON; send JSON or a multipart form with an image file") from None
    if not isinstance(body, dict):
        raise RequestError("the JSON body must be an object, e.g. {\"key\": \"...\", \"k\": 9}")
    return body


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def _upload(form, field: str) -> Query:
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise RequestError(f"the form needs a file field {field!r} holding an image")
    return Query(upload=await upload.read(), name=upload.filename or field)


def _reference(body: Any, name: str) -> Query:
    if not isinstance(body, dict) or ("key" in body) == ("vector" in body):
        raise RequestError(f"{name} must be an object with exactly one of \"key\" or \"vector\"")
    return Query(key=body.get("key"), vector=body.get("vector"))


def _k(text: Any) -> Any:
    """k from a form field (text) or JSON (a number already)."""
    if isinstance(text, str):
        try:
            return int(text)
        except ValueError:
            raise RequestError(f"k must be a whole number, got {text[:20]!r}") from None
    return text


async def _answer(service: Service, queries: tuple[Query, ...], method, *args) -> JSONResponse:
    """method(*args) as JSON: on the event loop when it only looks up the index and that is quick (a
    hop to a worker thread would cost more than the search), else in a worker thread."""
    if service.quick_lookups and all(query.upload is None for query in queries):
        return JSONResponse(method(*args))
    return JSONResponse(await run_in_threadpool(method, *args))


async def _query_and_k(service: Service, request: Request, default_k: int) -> tuple[Query, Any]:
    if _is_form(request):
        form = await _form(request)
        k = _k(form.get("k", default_k))  # checked before the upload is decoded
        return await _upload(form, "image"), k
    body = await _json(request)
    return _reference(body, "the body"), _k(body.get("k", default_k))


# ---------------------------------------------------------------- the application

def create_app(service: Service) -> FastAPI:
    """The ASGI application serving `service` (run it with uvicorn; test it with fastapi's TestClient)."""
    config = service.config
    app = FastAPI(title="siamese", version=__version__, docs_url=None, redoc_url=None,
                  description="Search, classify and verify items with a siamese model and its index; label pairs "
                  "for fine-tuning. Errors are JSON {\"error\": \"...\"}.")
    app.openapi_version = "3.0.3"  # what the bundled Swagger UI 4 renders

    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes)
    hosts = ("127.0.0.1", "localhost", "::1", config.host) if is_loopback(config.host) else None
    app.add_middleware(RequestGuard, token=config.token.encode() if config.token else None, hosts=hosts)

    @app.exception_handler(RequestError)
    async def requesterror_response(request: Request, exc: RequestError):
        return error_response(exc.status, str(exc))

    @app.exception_handler(SiameseError)
    @app.exception_handler(VectorIndexError)
    async def libraryerror_response(request: Request, exc: Exception):
        return error_response(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validationerror_response(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if tuple(first.get("loc", ()))[-1:] == ("item_id",):
            return error_response(404, "no indexed item has that id; item ids are whole numbers from /search or /map")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect):
        logger.debug("%s %s: the client left before its request arrived", request.method, request.url.path)
        return Response(status_code=400)  # nobody reads it

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    @app.exception_handler(HTTPException)
    async def httperror_response(request: Request, exc: HTTPException):
        message = {404: "no such page or endpoint; see /docs",
                   405: f"{request.method} is not how {request.url.path} is called; see /docs"}.get(exc.status_code,
                                                                                              str(exc.detail))
        return error_response(exc.status_code, message)

    # -------------------------------------------------------------- pages

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                            "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="siamese API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    # -------------------------------------------------------------- the API

    @app.get("/health", summary="200 once the model and index are loaded")
    async def health():
        return {"status": "ok"}

    @app.get("/info", summary="What is served: the index, the model, its calibration, labelling")
    async def info():
        return await run_in_threadpool(service.info)

    @app.post("/search", summary="The k nearest indexed items of a key, a vector or an uploaded image",
              openapi_extra=_body(SearchBody, ("image",), k=True))
    async def search(request: Request):
        query, k = await _query_and_k(service, request, 9)
        return await _answer(service, (query,), service.search, query, k)

    @app.post("/classify", summary="A label by the vote of the k nearest labelled items",
              openapi_extra=_body(SearchBody, ("image",), k=True))
    async def classify(request: Request):
        query, k = await _query_and_k(service, request, 5)  # exact votes over every labelled item: a worker thread
        return JSONResponse(await run_in_threadpool(service.classify, query, k))

    @app.post("/verify", summary="Same or different: the distance between two items and P(same) when calibrated",
              openapi_extra=_body(VerifyBody, ("a", "b")))
    async def verify(request: Request):
        if _is_form(request):
            form = await _form(request)
            a, b = await _upload(form, "a"), await _upload(form, "b")
        else:
            body = await _json(request)
            a, b = _reference(body.get("a"), "a"), _reference(body.get("b"), "b")
        return await _answer(service, (a, b), service.verify, a, b)

    @app.get("/items/{item_id}", summary="Key and label of an indexed item")
    async def item(item_id: int):
        return await run_in_threadpool(service.item, item_id)

    @app.get("/items/{item_id}/image", summary="An indexed item as PNG, as the model sees it",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def item_image(item_id: int):
        data = await run_in_threadpool(service.item_png, item_id)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/map", summary="A 2-D map of (a sample of) the indexed items, x and y in 0..1")
    async def latent_map():
        return await run_in_threadpool(service.latent_map)

    @app.get("/pairs/next", summary="The pair the model is least sure of, not yet shown or labelled")
    async def next_pair():
        return await run_in_threadpool(service.next_pair)

    @app.post("/pairs", summary="Record a same (1) / different (0) label in --pairs-out",
              openapi_extra=_body(PairBody))
    async def record_pair(request: Request):
        body = await _json(request)
        return await run_in_threadpool(service.record_pair, body.get("a"), body.get("b"), body.get("label"))

    return app
