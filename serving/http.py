"""The HTTP service for a saved model: an ASGI app (Starlette) on uvicorn (``pip install 'simplug[http]'``).

Endpoints (every response, errors included, is JSON):

- ``POST /encode``: the body is a JSON list of objects, ``[obj, obj, ...]``, or the same list
  wrapped as ``{"inputs": [obj, ...]}``; a model with a head per side takes
  ``{"inputs": [...], "side": "query"}`` (or ``"document"``). An object is what the model's
  encoder collate takes: a list of numbers for tensor encoders (``torch_module``), a string for
  text encoders. The answer is ``{"embeddings": [[float, ...], ...], "embedding_size": d,
  "count": n}``, in the order of the inputs.
- ``POST /search`` (when served with an index): ``{"query": obj}`` or ``{"queries": [obj, ...]}``,
  with ``"k"`` (default 10) and an optional payload filter ``"where": {"field": value}``. The
  answer is ``{"hits": [...]}`` for one query, ``{"results": [[...], ...]}`` for several; a hit
  is ``{"id", "score", "payload"}``, best first.
- ``GET /health``: ``{"status": "ok", "embedding_size": d, "max_batch": ..., "max_body_bytes": ...,
  "input": {...}, ...}``; never waits for the model.
- ``GET /info``: the model's manifest, as saved (with its similarity: distance, normalised).
- ``GET /openapi.json``: the OpenAPI description of all of this.

Limits: a body larger than ``max_body_bytes`` gets 413 without being read (also for a client that
sends ``Expect: 100-continue``); more than ``max_batch`` objects gets 413; a text longer than
``max_item_chars`` gets 413 (a tokenizer would spend seconds on it before truncating); a body that
is not JSON, not UTF-8, or of the wrong shape, and objects of the wrong type get 400 naming the
problem; an object the model fails on in another way gets 422 with the reason (never a
traceback); a request that takes longer than ``request_timeout`` seconds in all (a slow upload
included) gets 503. Malformed HTTP (a bad request line, a bad or conflicting Content-Length) is
answered by the HTTP layer, also in JSON. The Content-Type header is not checked, so ``curl -d``
and ``urllib`` work as they are.

Concurrency: uvicorn's one event loop reads requests; the model runs in one worker thread.
Requests that arrive while it is busy, or within ``batch_wait_ms`` of each other, are encoded
together in one forward pass (at most ``max_batch`` objects), and each gets its own rows back;
a combined batch that fails is retried request by request, so one bad request never fails its
neighbours. At most ``max_connections`` requests are being processed at once; more wait, and
``/health`` answers regardless.
"""
from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import simplug
from simplug.components.index import (
    CollectionNotFoundError,
    IndexUnavailableError,
    VectorIndexError,
)
from simplug.errors import DataError, SimplugError
from simplug.model.similarity_model import SIDES
from simplug.serving.inputs import (
    check_tensor_objects,
    describe_inputs,
    takes_tensors,
    tensor_input_shape,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_ITEM_CHARS = 20_000
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_BATCH_WAIT_MS = 2.0
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_K = 10
#: open connections beyond this get uvicorn's 503 at once (a cap on sockets, not on work)
MAX_OPEN_CONNECTIONS = 1024
#: an idle keep-alive connection is closed after this many seconds
KEEP_ALIVE_S = 5
#: largest request line plus headers (h11 refuses more with a 400)
MAX_HEADER_BYTES = 64 * 1024
_MAX_MESSAGE = 400


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and the message the client sees."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        #: the body was not read, so the connection cannot carry another request
        self.close = close


class ServerError(SimplugError):
    """The server cannot start: the address cannot be bound, or the http extra is missing."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in JSON; send finite numbers")


def _short(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise RequestError(400, "the JSON is nested too deeply") from None
    except ValueError as exc:
        raise RequestError(400, f"the body is not valid JSON: {_short(str(exc))}") from None


class EncodingService:
    """The model, its limits and checks, and the synchronous encode the batcher runs; no HTTP here."""

    def __init__(
        self,
        model: Any,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        batch_size: int = 32,
        max_item_chars: int = DEFAULT_MAX_ITEM_CHARS,
        index: Any = None,
    ):
        for name, value in (("max_batch", max_batch), ("max_body_bytes", max_body_bytes), ("batch_size", batch_size),
                            ("max_item_chars", max_item_chars)):
            _positive_int(name, value)
        self.model = model
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.batch_size = batch_size
        self.max_item_chars = max_item_chars
        self.index = index
        self.manifest = dict(getattr(model, "manifest", {}) or {})
        if self.manifest and "similarity" not in self.manifest:  # a model saved before it was recorded
            self.manifest["similarity"] = {"distance": model.distance, "normalized": False}
        # A head that reads the batch (routing) takes records that are more than the encoder's objects.
        head_reads_batch = bool(getattr(model.head, "reads_batch", False))
        self.input_description = describe_inputs(dict(model.encoders), head_reads_batch)
        # Objects for a single tensor encoder are checked here, so a wrong type or size gets a
        # message about the request rather than about a matrix product.
        self._tensor_shape: tuple[int, ...] | None = None
        self._check_tensors = False
        if len(model.encoders) == 1 and not head_reads_batch:
            encoder = next(iter(model.encoders.values()))
            self._check_tensors = takes_tensors(encoder)
            self._tensor_shape = tensor_input_shape(encoder) if self._check_tensors else None

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "simplug_version": simplug.__version__,
            "embedding_size": int(self.model.embedding_size),
            "max_batch": self.max_batch,
            "max_body_bytes": self.max_body_bytes,
            "max_item_chars": self.max_item_chars,
            "input": self.input_description,
            "distance": self.model.distance,
            "search": self.index is not None,
        }

    def check_objects(self, payload: Any, where: str) -> list[Any]:
        """A list of at most ``max_batch`` objects of the right type and size, or ``RequestError``."""
        if not isinstance(payload, list):
            kind = "an object" if isinstance(payload, dict) else type(payload).__name__
            raise RequestError(400, f'{where} must be a JSON list of objects (or {{"inputs": [...]}}), got {kind}')
        if len(payload) > self.max_batch:
            raise RequestError(
                413, f"{len(payload)} objects in one request; the limit is {self.max_batch} (split the request)"
            )
        for i, obj in enumerate(payload):
            if isinstance(obj, str) and len(obj) > self.max_item_chars:
                raise RequestError(
                    413, f"item {i} has {len(obj)} characters; the limit is {self.max_item_chars} per item "
                    "(the model reads only the start of a long text: send that part)"
                )
        if self._check_tensors:
            try:
                check_tensor_objects(payload, self._tensor_shape)
            except DataError as exc:
                raise RequestError(400, str(exc)) from None
            except RecursionError:
                raise RequestError(400, "an object is nested too deeply") from None
        return payload

    def parse(self, body: bytes) -> tuple[list[Any], str | None]:
        """The objects and side of an ``/encode`` body, or ``RequestError``."""
        payload = parse_json(body)
        side = None
        if isinstance(payload, dict):
            extra = sorted(set(payload) - {"inputs", "side"})
            if "inputs" not in payload or extra:
                what = f"unknown keys {extra}" if extra else "no 'inputs' key"
                raise RequestError(400, f'the JSON object has {what}; send a list of objects or {{"inputs": [...], "side": "query"}}')
            side = payload.get("side")
            if side is not None and side not in SIDES:
                raise RequestError(400, f"'side' is {side!r}; it must be one of {list(SIDES)}")
            payload = payload["inputs"]
            where = "'inputs'"
        else:
            where = "the body"
        if side is None and getattr(self.model, "sides", ()):
            raise RequestError(400, 'this model has a head per side: send {"inputs": [...], "side": "query"} (or "document")')
        return self.check_objects(payload, where), side

    def parse_search(self, body: bytes) -> tuple[list[Any], bool, int, dict[str, Any] | None]:
        """(queries, whether one query was sent, k, filter) of a ``/search`` body."""
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise RequestError(400, 'send a JSON object: {"query": ..., "k": 10} or {"queries": [...], "k": 10}')
        extra = sorted(set(payload) - {"query", "queries", "k", "where"})
        if extra or ("query" in payload) == ("queries" in payload):
            what = f"unknown keys {extra}" if extra else "both 'query' and 'queries'" if "query" in payload else "no 'query' or 'queries'"
            raise RequestError(400, f'the JSON object has {what}; send {{"query": ..., "k": 10}} or {{"queries": [...], "k": 10}}')
        single = "query" in payload
        queries = self.check_objects([payload["query"]] if single else payload["queries"], "'queries'")
        k = payload.get("k", DEFAULT_K)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise RequestError(400, f"'k' must be a positive whole number, got {json.dumps(k)}")
        where = payload.get("where")
        if where is not None and not isinstance(where, dict):
            raise RequestError(400, "'where' must be an object of field: value (a payload filter)")
        return queries, single, k, where

    def encode(self, objects: list[Any], side: str | None = None) -> np.ndarray:
        """Embeddings of ``objects`` (run in the model thread), or ``RequestError``."""
        if not objects:
            return np.zeros((0, int(self.model.embedding_size)), dtype=np.float32)
        try:
            embeddings = self.model.encode(objects, batch_size=self.batch_size, to_numpy=True, side=side)
        except DataError as exc:  # the encoder's collate named what is wrong with the objects
            raise RequestError(400, _short(str(exc))) from None
        except (SimplugError, TypeError, ValueError, KeyError, IndexError, RuntimeError) as exc:
            # Bad objects surface as these from collates and torch; the operator gets the
            # traceback on stderr, the client only the reason.
            traceback.print_exc(file=sys.stderr)
            raise RequestError(422, f"the model cannot encode these objects: {type(exc).__name__}: {_short(str(exc))}") from None
        if not np.isfinite(embeddings).all():
            raise RequestError(422, "the model produced non-finite embeddings for these objects")
        return embeddings.astype(np.float32, copy=False)

    @staticmethod
    def encode_answer(embeddings: np.ndarray) -> dict[str, Any]:
        return {"embeddings": embeddings.tolist(), "embedding_size": int(embeddings.shape[1]), "count": int(embeddings.shape[0])}


class MicroBatcher:
    """Gathers concurrent encode jobs into one forward pass in a single model thread.

    A job waits at most ``wait_s`` for company (and not at all while the model is busy: jobs that
    arrived meanwhile go together at once); a pass takes jobs until ``max_items`` objects. With
    ``enabled=False`` every job is its own pass, one at a time (the old lock's behaviour).
    """

    def __init__(self, encode: Callable[[list[Any], str | None], np.ndarray], max_items: int, wait_s: float,
                 enabled: bool = True):
        self._encode = encode
        self.max_items = max_items
        self.wait_s = max(0.0, float(wait_s))
        self.enabled = enabled
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplug-model")
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._held: tuple | None = None
        #: forward passes run and jobs served, for tests and benchmarks
        self.passes = 0
        self.jobs = 0

    def queued(self) -> int:
        """Jobs waiting for a forward pass (not counting the one running)."""
        return (self._queue.qsize() if self._queue is not None else 0) + (self._held is not None)

    async def encode(self, objects: list[Any], side: str | None) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run())
        future: asyncio.Future = loop.create_future()
        self._queue.put_nowait((objects, side, future))
        return await future

    async def _next(self) -> tuple:
        if self._held is not None:
            job, self._held = self._held, None
            return job
        assert self._queue is not None
        return await self._queue.get()

    async def _gather(self) -> list[tuple]:
        loop = asyncio.get_running_loop()
        first = await self._next()
        jobs, count = [first], len(first[0])
        if not self.enabled:
            return jobs
        deadline = loop.time() + self.wait_s
        assert self._queue is not None
        while count < self.max_items:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if count + len(job[0]) > self.max_items:
                self._held = job  # first of the next pass
                break
            jobs.append(job)
            count += len(job[0])
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [job for job in await self._gather() if not job[2].done()]  # callers that gave up are skipped
            by_side: dict[str | None, list[tuple]] = {}
            for job in jobs:
                by_side.setdefault(job[1], []).append(job)
            for side, group in by_side.items():
                await self._pass(loop, side, group)

    async def _pass(self, loop: asyncio.AbstractEventLoop, side: str | None, group: list[tuple]) -> None:
        objects = [obj for job in group for obj in job[0]]
        try:
            self.passes += 1
            embeddings = await loop.run_in_executor(self.model_thread, self._encode, objects, side)
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, never lost
            if len(group) > 1 and isinstance(exc, Exception):
                for job in group:  # find whose objects failed; the others still get answers
                    await self._pass(loop, side, [job])
                return
            for job in group:
                if not job[2].done():
                    job[2].set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for objs, _side, future in group:
            if not future.done():
                future.set_result(embeddings[start:start + len(objs)])
            start += len(objs)
            self.jobs += 1

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.model_thread.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------- the ASGI app
def _openapi(service: EncodingService) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}
    errors = {str(code): {"description": text, "content": {"application/json": {"schema": error}}}
              for code, text in ((400, "bad JSON, shape or object type"), (411, "no Content-Length"),
                                 (413, "body, batch or item too large"), (422, "the model cannot encode an object"),
                                 (503, "the request took too long, or the index is unreachable"))}
    objects = {"type": "array", "maxItems": service.max_batch, "items": {}}
    paths: dict[str, Any] = {
        "/encode": {"post": {
            "summary": "Embed objects",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                objects,
                {"type": "object", "required": ["inputs"], "properties": {
                    "inputs": objects, "side": {"type": "string", "enum": list(SIDES)}}},
            ]}}}},
            "responses": {"200": {"description": "one embedding per object, in order", "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                    "embedding_size": {"type": "integer"}, "count": {"type": "integer"}}}}}}, **errors},
        }},
        "/health": {"get": {"summary": "Liveness and limits", "responses": {"200": {"description": "ok"}}}},
        "/info": {"get": {"summary": "The model's manifest, with its similarity", "responses": {"200": {"description": "ok"}}}},
    }
    if service.index is not None:
        hit = {"type": "object", "properties": {"id": {"type": "string"}, "score": {"type": "number"}, "payload": {"type": "object"}}}
        paths["/search"] = {"post": {
            "summary": "Nearest indexed records of one query or a batch",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "query": {}, "queries": objects, "k": {"type": "integer", "minimum": 1, "default": DEFAULT_K},
                "where": {"type": "object", "description": "payload filter: every field must have this value (or one of a list)"}}}}}},
            "responses": {"200": {"description": "hits, best first", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"hits": {"type": "array", "items": hit},
                                                 "results": {"type": "array", "items": {"type": "array", "items": hit}}}}}}},
                **errors},
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "simplug model server", "version": simplug.__version__},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "required": ["error", "status"], "properties": {
            "error": {"type": "string"}, "status": {"type": "integer"}}}}},
    }


def _json(status: int, payload: Any, close: bool = False, allow: str | None = None) -> Any:
    from starlette.responses import Response

    headers = {}
    if close:
        headers["Connection"] = "close"
    if allow:
        headers["Allow"] = allow
    return Response(json.dumps(payload, allow_nan=False), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, close: bool = False, allow: str | None = None) -> Any:
    return _json(status, {"error": message, "status": status}, close=close, allow=allow)


async def read_body(request: Any, limit: int) -> bytes:
    """The body, refused from its headers alone when too large (nothing is read, so a client that
    sent ``Expect: 100-continue`` gets the 413 instead of the go-ahead)."""
    if request.headers.get("transfer-encoding"):
        raise RequestError(411, "chunked bodies are not accepted; send a Content-Length header", close=True)
    raw = request.headers.get("content-length")
    if raw is None:
        raise RequestError(411, "send a Content-Length header with the body", close=True)
    try:
        length = int(raw)
    except ValueError:
        length = -1
    if length < 0:
        raise RequestError(400, f"Content-Length {raw!r} is not a byte count", close=True)
    if length > limit:
        raise RequestError(413, f"the body has {length} bytes; the limit is {limit} (send fewer objects per request)", close=True)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # h11 holds the client to its Content-Length; this is belt and braces
            raise RequestError(413, f"the body is over the limit of {limit} bytes", close=True)
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(service: EncodingService, batcher: MicroBatcher, max_connections: int = DEFAULT_MAX_CONNECTIONS,
              request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S) -> Any:
    """The Starlette app: routes, JSON errors for everything, a deadline on every request."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    _positive_int("max_connections", max_connections)
    if not request_timeout > 0:
        raise ValueError(f"request_timeout must be positive, got {request_timeout!r}")
    index_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplug-index")
    slots: list[asyncio.Semaphore] = []  # made in the server's loop, on first use

    def slot() -> asyncio.Semaphore:
        if not slots:
            slots.append(asyncio.Semaphore(max_connections))
        return slots[0]

    async def guarded(request: Any, work: Callable[[bytes], Any]) -> Any:
        async def handle() -> Any:
            body = await read_body(request, service.max_body_bytes)
            async with slot():
                return await work(body)

        try:
            return _json(200, await asyncio.wait_for(handle(), request_timeout))
        except RequestError as exc:
            return _error(exc.status, exc.message, close=exc.close)
        except asyncio.TimeoutError:
            return _error(503, f"the request did not finish within {request_timeout:g} s (a slow upload, or a busy "
                               "server); send it again, or fewer objects at once", close=True)
        except Exception as exc:  # noqa: BLE001 - a bug must not leak a traceback to the client
            traceback.print_exc(file=sys.stderr)
            return _error(500, f"internal error ({type(exc).__name__}); see the server log", close=True)

    async def encode(request: Any) -> Any:
        async def work(body: bytes) -> dict[str, Any]:
            objects, side = service.parse(body)
            if not objects:
                return {"embeddings": [], "embedding_size": int(service.model.embedding_size), "count": 0}
            return service.encode_answer(await batcher.encode(objects, side))

        return await guarded(request, work)

    async def search(request: Any) -> Any:
        if service.index is None:
            return _error(404, "this server has no index; start it with `simplug serve MODEL --index PATH_OR_URL`")

        async def work(body: bytes) -> dict[str, Any]:
            queries, single, k, where = service.parse_search(body)
            side = "query" if getattr(service.model, "sides", ()) else None
            vectors = await batcher.encode(queries, side)
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(index_thread, service.index.search, vectors, k, where)
            except (CollectionNotFoundError, IndexUnavailableError) as exc:
                raise RequestError(503, _short(str(exc))) from None
            except (VectorIndexError, ValueError) as exc:
                raise RequestError(400, _short(str(exc))) from None
            hits = [[hit.as_dict() for hit in row] for row in results]
            return {"hits": hits[0]} if single else {"results": hits, "count": len(hits)}

        return await guarded(request, work)

    async def health(request: Any) -> Any:
        return _json(200, service.health())

    async def info(request: Any) -> Any:
        return _json(200, service.manifest)

    openapi = _openapi(service)

    async def openapi_json(request: Any) -> Any:
        return _json(200, openapi)

    routes = {"/encode": "POST", "/search": "POST", "/health": "GET", "/info": "GET", "/openapi.json": "GET"}

    async def not_found(request: Any, exc: Exception) -> Any:
        listed = ", ".join(f"{method} {path}" for path, method in routes.items())
        return _error(404, f"no such endpoint {request.url.path!r}; the endpoints are {listed}")

    async def not_allowed(request: Any, exc: Exception) -> Any:
        path = request.url.path.rstrip("/") or "/"
        method = routes.get(path, "GET")
        # a body we did not read may follow
        return _error(405, f"{path} takes {method}, not {request.method}", close=True, allow=method)

    async def http_error(request: Any, exc: HTTPException) -> Any:
        return _error(exc.status_code, str(exc.detail))

    app = Starlette(
        routes=[
            Route("/encode", encode, methods=["POST"]),
            Route("/search", search, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/info", info, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed, HTTPException: http_error},
    )
    app.state.index_thread = index_thread
    return app


# ------------------------------------------------------------------------------------------ server
def _json_error_protocol() -> type:
    """uvicorn's h11 protocol, answering malformed HTTP with a JSON 400 that says what was wrong."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JsonErrorH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            # uvicorn calls this from inside its `except h11.RemoteProtocolError`, so the reason is at hand
            reason = sys.exc_info()[1]
            detail = str(reason) if reason is not None else msg
            if "content-length" in detail.lower():
                message = f"Content-Length is not a byte count or is given twice with different values ({detail})"
            else:
                message = f"Bad request syntax ({detail})"
            body = json.dumps({"error": message, "status": 400}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request")))
                self.transport.write(self.conn.send(h11.Data(data=body)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:  # the connection is past the point of answering
                pass
            self.transport.close()

    return JsonErrorH11Protocol


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); ``ServerError`` naming both and why."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServerError(f"cannot listen on {host}:{port}: the address does not resolve ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "pick another --port, or 0 for any free one" if exc.errno in (98, 48) else "check the --host address"
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}") from None
    sock.setblocking(False)
    return sock


class HttpServer:
    """A bound, not yet running uvicorn server: ``serve_forever()`` runs it (in any thread),
    ``shutdown()`` stops it from another thread, ``server_close()`` frees the socket."""

    def __init__(self, app: Any, sock: socket.socket, batcher: MicroBatcher, service: EncodingService,
                 access_log: bool = True):
        import uvicorn

        self.app = app
        self.socket = sock
        self.batcher = batcher
        self.service = service
        self.server_address = sock.getsockname()
        config = uvicorn.Config(
            app, http=_json_error_protocol(), lifespan="off", access_log=access_log, log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_OPEN_CONNECTIONS,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_graceful_shutdown=5, server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        self.batcher.close()
        self.app.state.index_thread.shutdown(wait=False, cancel_futures=True)
        self.socket.close()


def make_server(
    model: Any,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batch_size: int = 32,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    access_log: bool = True,
    max_item_chars: int = DEFAULT_MAX_ITEM_CHARS,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    micro_batching: bool = True,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    index: Any = None,
) -> HttpServer:
    """A bound, not yet running server for a loaded ``SimilarityModel`` (port 0: any free port),
    searching ``index`` (a ``VectorIndex`` the model built) on ``POST /search`` when given.

    Run it with ``serve_forever()``; stop it with ``shutdown()`` and ``server_close()``.
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ServerError("simplug serve needs the ASGI stack: pip install 'simplug[http]'") from None
    if batch_wait_ms < 0:
        raise ValueError(f"batch_wait_ms must be >= 0, got {batch_wait_ms!r}")
    service = EncodingService(model, max_batch=max_batch, max_body_bytes=max_body_bytes, batch_size=batch_size,
                              max_item_chars=max_item_chars, index=index)
    batcher = MicroBatcher(service.encode, max_items=max_batch, wait_s=batch_wait_ms / 1000.0, enabled=micro_batching)
    app = build_app(service, batcher, max_connections=max_connections, request_timeout=request_timeout)
    sock = bind_socket(host, port)
    return HttpServer(app, sock, batcher, service, access_log=access_log)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ITEM_CHARS",
    "EncodingService",
    "HttpServer",
    "MicroBatcher",
    "RequestError",
    "ServerError",
    "build_app",
    "make_server",
    "is_loopback",
]
