"""An HTTP server for a saved model, on the standard library only (``http.server``).

Endpoints (every response, errors included, is JSON):

- ``POST /encode``: the body is a JSON list of objects, ``[obj, obj, ...]``, or the same list
  wrapped as ``{"inputs": [obj, ...]}``; a model with a head per side takes
  ``{"inputs": [...], "side": "query"}`` (or ``"document"``). An object is what the model's encoder collate takes:
  a list of numbers for tensor encoders (``torch_module``), a string for text encoders.
  The answer is ``{"embeddings": [[float, ...], ...], "embedding_size": d, "count": n}``, in
  the order of the inputs.
- ``GET /health``: ``{"status": "ok", "embedding_size": d, "max_batch": ..., "max_body_bytes": ...,
  "input": {...}}``.
- ``GET /info``: the model's manifest, as saved.

Limits: a body larger than ``max_body_bytes`` gets 413 without being read; more than
``max_batch`` objects gets 413; a body that is not JSON, not UTF-8, or of the wrong shape, and
objects of the wrong type (found by the server for tensor encoders, by the encoder's collate
otherwise, as a ``DataError``) get 400 naming the problem; an object the model fails on in
another way gets 422 with the reason (never a traceback). The Content-Type header is not checked, so ``curl -d`` and ``urllib`` work as they are.

One request at a time runs the model (a lock around ``encode``, which runs under
``torch.inference_mode``); parsing and JSON writing run in parallel in the request threads.
At most ``max_connections`` connections are handled at once; more wait in the listen queue.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np

import simplug
from simplug.errors import DataError, SimplugError
from simplug.model.similarity_model import SIDES
from simplug.serving.inputs import check_tensor_objects, describe_inputs, takes_tensors, tensor_input_shape

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 64
# An idle or slow client is dropped after this many seconds, so it cannot hold a thread forever.
SOCKET_TIMEOUT_S = 30.0
_MAX_MESSAGE = 400


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and the message the client sees."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in JSON; send finite numbers")


def _short(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


class EncodingService:
    """The model, its limits and the lock that serializes inference; no HTTP in here."""

    def __init__(
        self,
        model: Any,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        batch_size: int = 32,
    ):
        for name, value in (("max_batch", max_batch), ("max_body_bytes", max_body_bytes), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.model = model
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.batch_size = batch_size
        self.manifest = getattr(model, "manifest", {})
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
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "simplug_version": simplug.__version__,
            "embedding_size": int(self.model.embedding_size),
            "max_batch": self.max_batch,
            "max_body_bytes": self.max_body_bytes,
            "input": self.input_description,
        }

    def parse(self, body: bytes) -> tuple[list[Any], str | None]:
        """The list of objects in a request body, or ``RequestError``."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(400, f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        try:
            payload = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise RequestError(400, "the JSON is nested too deeply") from None
        except ValueError as exc:
            raise RequestError(400, f"the body is not valid JSON: {_short(str(exc))}") from None
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
            raise RequestError(400, f'this model has a head per side: send {{"inputs": [...], "side": "query"}} (or "document")')
        if not isinstance(payload, list):
            kind = "an object" if isinstance(payload, dict) else type(payload).__name__
            raise RequestError(400, f'{where} must be a JSON list of objects (or {{"inputs": [...]}}), got {kind}')
        if len(payload) > self.max_batch:
            raise RequestError(
                413, f"{len(payload)} objects in one request; the limit is {self.max_batch} (split the request)"
            )
        if self._check_tensors:
            try:
                check_tensor_objects(payload, self._tensor_shape)
            except DataError as exc:
                raise RequestError(400, str(exc)) from None
            except RecursionError:
                raise RequestError(400, "an object is nested too deeply") from None
        return payload, side

    def encode(self, objects: list[Any], side: str | None = None) -> dict[str, Any]:
        if not objects:
            return {"embeddings": [], "embedding_size": int(self.model.embedding_size), "count": 0}
        try:
            with self._lock:
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
        return {
            "embeddings": embeddings.astype(np.float32).tolist(),
            "embedding_size": int(embeddings.shape[1]),
            "count": int(embeddings.shape[0]),
        }


class EncodingHandler(BaseHTTPRequestHandler):
    server_version = f"simplug/{simplug.__version__}"
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    server: "EncodingServer"

    # ------------------------------------------------------------- responses
    def _send_json(self, status: int, payload: Any, allow: str | None = None) -> None:
        body = json.dumps(payload, allow_nan=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error_json(self, status: int, message: str, allow: str | None = None) -> None:
        self._send_json(status, {"error": message, "status": status}, allow=allow)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, header too long, ...) as JSON too."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send_error_json(code, message or explain or phrase)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.access_log:
            super().log_message(format, *args)

    # --------------------------------------------------------------- routing
    _ROUTES = {"/encode": "POST", "/health": "GET", "/info": "GET"}

    def _route(self) -> str | None:
        """The path if this method may be used on it; otherwise answers 404/405 and returns None."""
        path = urlsplit(self.path).path.rstrip("/") or "/"
        method = self._ROUTES.get(path)
        if method is None:
            self._send_error_json(404, f"no such endpoint {path!r}; the endpoints are POST /encode, GET /health, GET /info")
            return None
        if method != self.command and not (method == "GET" and self.command == "HEAD"):
            self.close_connection = True  # a body we did not read may follow
            self._send_error_json(405, f"{path} takes {method}, not {self.command}", allow=method)
            return None
        return path

    def do_GET(self) -> None:
        path = self._route()
        if path == "/health":
            self._send_json(200, self.server.service.health())
        elif path == "/info":
            self._send_json(200, self.server.service.manifest)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if self._route() != "/encode":
            return
        try:
            body = self._read_body()
            objects, side = self.server.service.parse(body)
            result = self.server.service.encode(objects, side)
        except RequestError as exc:
            self._send_error_json(exc.status, exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not leak a traceback to the client
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._send_error_json(500, f"internal error ({type(exc).__name__}); see the server log")
            return
        self._send_json(200, result)

    def do_PUT(self) -> None:
        self._route()

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    # ------------------------------------------------------------------ body
    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(411, "chunked bodies are not accepted; send a Content-Length header")
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            raise RequestError(411, "send a Content-Length header with the body")
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError(400, f"Content-Length {raw!r} is not a byte count")
        limit = self.server.service.max_body_bytes
        if length > limit:
            # The body stays unread, so this connection cannot carry another request.
            self.close_connection = True
            raise RequestError(413, f"the body has {length} bytes; the limit is {limit} (send fewer objects per request)")
        return length

    def handle_expect_100(self) -> bool:
        """A client that asks first ("Expect: 100-continue") learns of a too-large body before sending it."""
        try:
            self._content_length()
        except RequestError as exc:
            self._send_error_json(exc.status, exc.message)
            return False
        return super().handle_expect_100()

    def _read_body(self) -> bytes:
        length = self._content_length()
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes")
        return body


class EncodingServer(ThreadingHTTPServer):
    """Threaded server with a bound on the connections handled at once."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        service: EncodingService,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        access_log: bool = True,
    ):
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
        self.service = service
        self.access_log = access_log
        self._slots = threading.BoundedSemaphore(max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, EncodingHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waiting here keeps further connections in the listen queue instead of spawning threads.
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started, so none will give the slot back
            self._slots.release()
            raise
        # A KeyboardInterrupt while the thread starts must pass untouched (it stops the server);
        # the thread, once started, gives its slot back itself.

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_server(
    model: Any,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batch_size: int = 32,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    access_log: bool = True,
) -> EncodingServer:
    """A bound, not yet running server for a loaded ``SimilarityModel`` (port 0: any free port).

    Run it with ``serve_forever()``; stop it with ``shutdown()`` and ``server_close()``.
    """
    service = EncodingService(model, max_batch=max_batch, max_body_bytes=max_body_bytes, batch_size=batch_size)
    return EncodingServer((host, port), service, max_connections=max_connections, access_log=access_log)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "EncodingService",
    "EncodingServer",
    "RequestError",
    "make_server",
    "is_loopback",
]
