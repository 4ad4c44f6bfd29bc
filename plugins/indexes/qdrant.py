"""The built-in ``qdrant`` index, through ``qdrant-client`` (``pip install 'simplug[index]'``).

Where it lives:

- a folder (the default): Qdrant's embedded local mode, persisted to that folder; nothing to run.
  One process at a time may open a folder (Qdrant locks it).
- ``:memory:``: embedded and gone at ``close()`` (tests, one-off searches).
- a URL (``http://host:6333``, ``https://cluster.cloud.qdrant.io``): a Qdrant server or cluster.
  The API key comes from the ``QDRANT_API_KEY`` environment variable (never from the command
  line, where other users of the machine could read it); ``prefer_grpc=True`` as an option uses
  gRPC. The same client calls serve both modes, so everything tested in local mode holds for a
  server.

What simplug needs to remember about a collection (the model that built it, its distance and
the side of the vectors) is the :class:`~simplug.components.index.IndexInfo` kept in the
collection's own metadata under ``"simplug"`` (Qdrant servers 1.16 and later keep collection
metadata; local mode always does).

Ids: simplug ids are any strings; Qdrant takes unsigned ints or UUIDs, so each id maps to the
UUID-5 of the text (the same id always maps to the same point, which is what makes re-indexing
idempotent) and the text is kept in the payload under ``ID_FIELD``.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np
from simplug.components.index import (
    CollectionNotFoundError,
    Hit,
    IndexInfo,
    IndexMismatchError,
    IndexUnavailableError,
    VectorIndex,
    check_search_arguments,
)

#: payload key holding the simplug id of a point (the point's own id is its UUID-5)
ID_FIELD = "_simplug_id"
METADATA_KEY = "simplug"
API_KEY_ENV = "QDRANT_API_KEY"
_ID_NAMESPACE = uuid.UUID("5b0f4cc0-7b52-4c55-9a57-0c1c6a1d2a11")
_DISTANCES = {"cosine": "Cosine", "dot_product": "Dot", "euclidean": "Euclid", "manhattan": "Manhattan"}


def point_id(simplug_id: str) -> str:
    """The Qdrant point id of a simplug id: a UUID-5, the same on every run and machine."""
    return str(uuid.uuid5(_ID_NAMESPACE, simplug_id))


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https", "grpc")


def _qdrant() -> Any:
    try:
        import qdrant_client
        from qdrant_client import models
    except ImportError:
        raise IndexUnavailableError(
            "the 'qdrant' index needs qdrant-client: pip install 'simplug[index]'"
        ) from None
    return qdrant_client, models


class QdrantIndex(VectorIndex):
    """A Qdrant collection, embedded in a folder (default) or on a server (``location`` a URL).

    Local mode searches exhaustively, so its results are exact; a server builds HNSW graphs
    once a collection grows past its indexing threshold, and is then approximate.
    """

    name = "qdrant"
    distances = tuple(_DISTANCES)

    def __init__(self, location: str, collection: str = "simplug", timeout: float = 10.0, prefer_grpc: bool = False,
                 **options: Any):
        super().__init__(location, collection, **options)
        if not isinstance(collection, str) or not collection or "/" in collection:
            raise ValueError(f"collection {collection!r} is not a usable name; use letters, digits, '-' and '_'")
        qdrant_client, self._models = _qdrant()
        self._known_size: int | None = None
        self._info: IndexInfo | None = None
        self.remote = is_url(location)
        # exhaustive search in local mode; a server may answer from its HNSW graph
        self.exact = not self.remote
        try:
            if self.remote:
                self._client = qdrant_client.QdrantClient(
                    url=location, api_key=os.environ.get(API_KEY_ENV) or None, timeout=int(timeout),
                    prefer_grpc=prefer_grpc, **options,
                )
                self._client.get_collections()  # fail here, naming the URL, rather than at the first write
            elif location == ":memory:":
                self._client = qdrant_client.QdrantClient(location=":memory:")
            else:
                if os.path.exists(location) and not os.path.isdir(location):
                    raise IndexUnavailableError(f"{location} is a file; an embedded Qdrant index is a folder")
                os.makedirs(location, exist_ok=True)
                self._client = qdrant_client.QdrantClient(path=location)
                self._relax_local_durability()
        except IndexUnavailableError:
            raise
        except RuntimeError as exc:  # the embedded storage is locked by another process
            raise IndexUnavailableError(
                f"cannot open the Qdrant index in {location}: {exc}. Close the other program using it "
                "(one process at a time may open an embedded index), or serve it from a Qdrant server"
            ) from None
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types (httpx, grpc)
            raise IndexUnavailableError(self._unreachable(exc)) from None

    def _relax_local_durability(self) -> None:
        """Local mode commits every point to SQLite on its own, an fsync each: on a busy disk that,
        not the search, bounds indexing. With a write-ahead log and ``synchronous=NORMAL`` a
        commit waits for no fsync; a crash of the program loses nothing, a power cut may lose the
        last points written, which rerunning ``simplug index`` restores (it is idempotent).
        This reaches into qdrant-client's local storage; if its layout changes, nothing is tuned."""
        try:
            collections = self._client._client.collections  # noqa: SLF001 - see the docstring
        except AttributeError:
            return
        for collection in collections.values():
            connection = getattr(getattr(collection, "storage", None), "storage", None)
            if connection is not None and not getattr(collection, "_simplug_tuned", False):
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute("PRAGMA synchronous=NORMAL")
                    collection._simplug_tuned = True  # noqa: SLF001
                except Exception:  # noqa: BLE001 - a tuning that fails leaves the defaults
                    pass

    def _unreachable(self, exc: BaseException) -> str:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        if self.remote:
            return (f"cannot reach the Qdrant server at {self.location} ({type(exc).__name__}: {reason}); check that it "
                    f"runs and the URL, and set {API_KEY_ENV} if it needs an API key")
        return f"the Qdrant index in {self.location} failed ({type(exc).__name__}: {reason})"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A client call, with connection failures turned into one clear error naming the place."""
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError) as exc:  # local mode's "collection not found" is a ValueError
            if "not found" in str(exc).lower():
                raise CollectionNotFoundError(
                    f"there is no {self.describe()}; build it with `simplug index MODEL DATA --index {self.location} "
                    f"--collection {self.collection}`"
                ) from None
            raise
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ in ("UnexpectedResponse",) and "404" in str(exc):
                raise CollectionNotFoundError(f"there is no {self.describe()}") from None
            raise IndexUnavailableError(f"{what}: " + self._unreachable(exc)) from None

    # -- the contract -------------------------------------------------------
    def info(self) -> IndexInfo | None:
        if self._info is not None:
            return self._info  # fixed at creation: read once
        if not self._call("checking the collection", self._client.collection_exists, self.collection):
            return None
        described = self._call("reading the collection", self._client.get_collection, self.collection)
        metadata = described.config.metadata or {}
        if METADATA_KEY not in metadata:
            raise IndexMismatchError(
                f"{self.describe()} was not made by simplug (its metadata has no {METADATA_KEY!r} entry); "
                "index into another --collection"
            )
        self._info = IndexInfo.from_dict(metadata[METADATA_KEY])
        return self._info

    def create(self, info: IndexInfo) -> None:
        models = self._models
        if info.distance not in _DISTANCES:
            raise IndexMismatchError(
                f"Qdrant has no {info.distance!r} distance; it searches with {', '.join(_DISTANCES)}"
            )
        if self._call("checking the collection", self._client.collection_exists, self.collection):
            raise ValueError(f"{self.describe()} exists already")
        distance = getattr(models.Distance, _DISTANCES[info.distance].upper())
        self._call("creating the collection", self._client.create_collection, self.collection,
                   vectors_config=models.VectorParams(size=int(info.dimension), distance=distance),
                   metadata={METADATA_KEY: info.as_dict()})
        if not self.remote and self.location != ":memory:":
            self._relax_local_durability()
        if self.remote:  # local mode has no payload indexes (and warns about them)
            self._call("indexing the id field", self._client.create_payload_index, self.collection, ID_FIELD,
                       field_schema=models.PayloadSchemaType.KEYWORD)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        models = self._models
        vectors = np.asarray(vectors, dtype=np.float32)
        if not (len(ids) == len(vectors) == len(payloads)):
            raise ValueError(f"{len(ids)} ids, {len(vectors)} vectors and {len(payloads)} payloads; give one of each per point")
        if not len(ids):
            return
        batch = models.Batch(
            ids=[point_id(str(i)) for i in ids],
            vectors=vectors.tolist(),
            payloads=[{**dict(p), ID_FIELD: str(i)} for i, p in zip(ids, payloads)],
        )
        self._call("writing points", self._client.upsert, self.collection, points=batch, wait=True)
        self._known_size = None

    def search(self, vectors: np.ndarray, k: int, where: Mapping[str, Any] | None = None) -> list[list[Hit]]:
        models = self._models
        info = self.require_info()
        # the size, to refuse a k larger than the collection, is counted again only when k
        # exceeds the last count (another writer may have added points since)
        if self._known_size is None or (isinstance(k, int) and k > self._known_size):
            self._known_size = self.count()
        array = check_search_arguments(vectors, k, info.dimension, self._known_size)
        query_filter = None
        if where:
            if not isinstance(where, Mapping) or not all(isinstance(key, str) for key in where):
                raise ValueError(f"a filter is an object of field: value, got {where!r}")
            conditions = []
            for key, value in where.items():
                if isinstance(value, (list, tuple)):
                    match: Any = models.MatchAny(any=list(value))
                elif isinstance(value, (str, int, bool)):
                    match = models.MatchValue(value=value)
                else:
                    raise ValueError(f"filter value for {key!r} must be a string, a whole number, a boolean or a list of them, got {value!r}")
                conditions.append(models.FieldCondition(key=key, match=match))
            query_filter = models.Filter(must=conditions)
        requests = [
            models.QueryRequest(query=row.tolist(), limit=int(k), filter=query_filter, with_payload=True)
            for row in array
        ]
        answers = self._call("searching", self._client.query_batch_points, self.collection, requests=requests)
        results = []
        for answer in answers:
            hits = []
            for point in answer.points:
                payload = dict(point.payload or {})
                simplug_id = str(payload.pop(ID_FIELD, point.id))
                hits.append(Hit(id=simplug_id, score=_score(info.distance, float(point.score)), payload=payload))
            results.append(hits)
        return results

    def count(self) -> int:
        return int(self._call("counting points", self._client.count, self.collection, exact=True).count)

    def close(self) -> None:
        # Left to the garbage collector at exit, the local client prints a traceback.
        client = self.__dict__.pop("_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing twice or after a failed start is harmless
                pass

    def __del__(self) -> None:
        self.close()


def _score(distance: str, raw: float) -> float:
    """Larger = more alike for every distance: Qdrant gives euclid and manhattan as distances."""
    return -raw if distance in ("euclidean", "manhattan") else raw
