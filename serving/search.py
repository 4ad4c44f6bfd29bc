"""Index and search with a saved model: the Python side of ``simplug index``, ``simplug search``,
``POST /search`` and ``simplug evaluate --index``.

::

    from simplug.serving import SimilarityModel
    from simplug.serving.search import open_index, index_records, search

    model = SimilarityModel.load("out/model")
    with open_index("./index", collection="faq") as index:          # embedded Qdrant in ./index
        index_records(model, index, [{"id": "1", "obj": "how do I pay?"}, ...], id_field="id")
        hits = search(model, index, ["payment options"], k=5)[0]     # [Hit(id, score, payload), ...]

An index remembers the model that built it (a fingerprint of the model's files), the distance
(the model's own: see ``SimilarityModel.distance``) and the side its vectors were encoded on;
adding to or searching an index with another model, or with another distance, is refused with
both named. Indexing is idempotent: every record has a stable id (``id_field``, or a hash of the
record), and writing a record again replaces it, so a rerun or a resumed run never duplicates.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from simplug.components.distance import resolve_distance
from simplug.components.index import Hit, IndexInfo, IndexMismatchError, VectorIndex
from simplug.components.ranking import score_blocks
from simplug.errors import DataError, SimplugError
from simplug.evaluation.retrieval import build_metrics, default_metric_specs
from simplug.model.card import MODEL_CARD
from simplug.registry import get_registry
from simplug.serving.inputs import (
    check_tensor_objects,
    takes_tensors,
    tensor_input_shape,
)

DEFAULT_COLLECTION = "simplug"
DEFAULT_BACKEND = "qdrant"
#: fields tried, in order, for the object to embed when the caller names none
OBJECT_FIELDS = ("obj", "text", "obj_b", "obj_a")


# ----------------------------------------------------------------------------- the model's identity
def model_fingerprint(model: Any) -> str:
    """A stable fingerprint of a model: the sha256 of its saved files' hashes (the manifest's
    file table, model card aside) for a loaded model, else of its weights."""
    manifest = getattr(model, "manifest", None)
    digest = hashlib.sha256()
    if manifest and manifest.get("files"):
        files = {name: entry.get("sha256") for name, entry in manifest["files"].items() if name != MODEL_CARD}
        digest.update(json.dumps(files, sort_keys=True).encode())
    else:
        for name, value in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_location(model: Any) -> str:
    return str(getattr(model, "source_path", "") or "(a model in memory)")


def open_index(location: str, collection: str = DEFAULT_COLLECTION, backend: str = DEFAULT_BACKEND,
               **options: Any) -> VectorIndex:
    """An index backend (a registered ``indexes`` plugin) on a folder or URL. Close it when done."""
    if not isinstance(location, str) or not location:
        raise ValueError("give the index's place: a folder for an embedded index, or a server URL")
    index_cls = get_registry().resolve("indexes", backend)
    index = index_cls(location, collection=collection, **options)
    if not isinstance(index, VectorIndex):
        raise SimplugError(f"the index backend {backend!r} built a {type(index).__name__}, not a VectorIndex")
    return index


def check_index_model(index: VectorIndex, info: IndexInfo, model: Any) -> None:
    """Refuse an index that another model, another distance or another vector size built."""
    fingerprint = model_fingerprint(model)
    if info.model_fingerprint != fingerprint:
        raise IndexMismatchError(
            f"{index.describe()} was built by the model at {info.model_path or '?'} (fingerprint "
            f"{info.model_fingerprint[:12]}), not by this one at {model_location(model)} (fingerprint {fingerprint[:12]}); "
            "search it with the model that built it, or index the data with this model into another --collection"
        )
    if info.distance != model.distance:
        raise IndexMismatchError(
            f"{index.describe()} compares vectors with the {info.distance!r} distance but the model at "
            f"{model_location(model)} compares with {model.distance!r}; index the data again into another --collection"
        )
    if info.dimension != int(model.embedding_size):
        raise IndexMismatchError(
            f"{index.describe()} holds {info.dimension}-dimensional vectors but the model gives "
            f"{model.embedding_size}; index the data again into another --collection"
        )


def _side(model: Any, side: str | None, default: str) -> str | None:
    if not getattr(model, "sides", ()):
        return None
    return side or default


def encode_objects(model: Any, objects: Sequence[Any], side: str | None, batch_size: int, what: str = "query") -> np.ndarray:
    """Embeddings of ``objects``; an object the model cannot take is a ``DataError`` naming it."""
    encoders = dict(model.encoders)
    if len(encoders) == 1 and not getattr(next(iter(model.heads.values())), "reads_batch", False):
        encoder = next(iter(encoders.values()))
        if takes_tensors(encoder):
            try:
                check_tensor_objects(list(objects), tensor_input_shape(encoder))
            except DataError as exc:
                raise DataError(f"a {what} of the wrong type for this model: {exc}") from None
    try:
        vectors = model.encode(list(objects), batch_size=batch_size, to_numpy=True, side=side)
    except DataError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as exc:
        raise DataError(f"the model cannot encode these {what} objects: {type(exc).__name__}: {exc}") from None
    if not np.isfinite(vectors).all():
        raise DataError(f"the model gave non-finite embeddings for these {what} objects")
    return vectors


# ----------------------------------------------------------------------------------------- indexing
@dataclass
class IndexReport:
    """What ``index_records`` did."""

    written: int
    duplicates_skipped: int
    total: int
    created: bool
    collection: str
    location: str

    def summary(self) -> str:
        made = "created" if self.created else "updated"
        extra = f", {self.duplicates_skipped} identical records skipped" if self.duplicates_skipped else ""
        return (f"{made} collection {self.collection!r} at {self.location}: wrote {self.written} points{extra}; "
                f"it holds {self.total}")


def record_id(record: Any) -> str:
    """The id of a record without an id field: a hash of its canonical JSON, the same on every run."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def pick_object_field(record: Mapping[str, Any], field: str | None, where: str) -> str:
    if field is not None:
        if field not in record:
            raise DataError(f"{where} has no field {field!r} (it has {', '.join(map(repr, record)) or 'none'}); "
                            "name the field that holds the object to embed")
        return field
    for name in OBJECT_FIELDS:
        if name in record:
            return name
    raise DataError(f"{where} has none of the fields {', '.join(OBJECT_FIELDS)}; say which field holds the object to embed")


def index_records(
    model: Any,
    index: VectorIndex,
    records: Iterable[Any],
    *,
    object_field: str | None = None,
    id_field: str | None = None,
    payload_fields: Sequence[str] | None = None,
    side: str | None = "document",
    batch_size: int = 1024,
    encode_batch_size: int = 32,
    show_progress: bool = False,
) -> IndexReport:
    """Embed ``records`` and upsert them into ``index`` (created with the model's distance when new).

    A record is a dict (a row of a JSONL or CSV file; its ``object_field`` is embedded) or a
    ``(line_number, dict)`` pair, whose line number errors then name. The whole record (or its
    ``payload_fields``) is the point's payload. Ids come from ``id_field`` or, without one, from
    a hash of the record; two records with one ``id_field`` value are an error naming both lines.
    Batches are upserted while the next batch is encoded; a large ``batch_size`` lets the encoder
    sort more texts by length (less padding), which is most of what makes it fast.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    side = _side(model, side, "document")
    created = False
    info = index.info()
    if info is None:
        info = IndexInfo(dimension=int(model.embedding_size), distance=model.distance,
                         model_fingerprint=model_fingerprint(model), model_path=model_location(model), side=side)
        index.create(info)
        created = True
    else:
        check_index_model(index, info, model)
        if info.side != side:
            raise IndexMismatchError(f"{index.describe()} holds {info.side or 'shared-head'} vectors; "
                                     f"these would be {side or 'shared-head'} vectors: use --side {info.side}")

    seen: dict[str, int | None] = {}
    duplicates = written = 0
    batch: list[tuple[str, Any, dict[str, Any]]] = []
    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(desc="indexing", unit="record")
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplug-upsert") as writer:

        def flush() -> None:
            nonlocal pending, written
            if not batch:
                return
            vectors = encode_objects(model, [obj for _, obj, _ in batch], side, encode_batch_size, what="record")
            if pending is not None:
                pending.result()  # one upsert in flight: bounded memory, errors surface here
            ids, payloads = [i for i, _, _ in batch], [p for _, _, p in batch]
            pending = writer.submit(index.upsert, ids, vectors, payloads)
            written += len(batch)
            if progress is not None:
                progress.update(len(batch))
            batch.clear()

        try:
            for position, item in enumerate(records, start=1):
                line, record = item if isinstance(item, tuple) else (position, item)
                where = f"record {line}"
                if not isinstance(record, Mapping):
                    record = {"obj": record}
                field = pick_object_field(record, object_field, where)
                if id_field is not None:
                    if id_field not in record or record[id_field] in (None, ""):
                        raise DataError(f"{where} has no {id_field!r}; every record needs an id when --id-field is given")
                    raw_id = record[id_field]
                    if isinstance(raw_id, (dict, list, float, bool)):
                        raise DataError(f"{where}: the id {raw_id!r} is not a string or a whole number")
                    point = str(raw_id)
                    if point in seen:
                        raise DataError(f"duplicate id {point!r}: records {seen[point]} and {line} both have it; "
                                        f"ids in {id_field!r} must be unique")
                else:
                    point = record_id(record)
                    if point in seen:
                        duplicates += 1  # the same record twice is the same point
                        continue
                seen[point] = line
                payload = dict(record) if payload_fields is None else {f: record[f] for f in payload_fields if f in record}
                batch.append((point, record[field], payload))
                if len(batch) >= batch_size:
                    flush()
            flush()
            if pending is not None:
                pending.result()
        finally:
            if progress is not None:
                progress.close()
    return IndexReport(written=written, duplicates_skipped=duplicates, total=index.count(), created=created,
                       collection=index.collection, location=index.location)


# ------------------------------------------------------------------------------------------ search
def search(
    model: Any,
    index: VectorIndex,
    queries: Sequence[Any],
    k: int = 10,
    where: Mapping[str, Any] | None = None,
    batch_size: int = 32,
) -> list[list[Hit]]:
    """The ``k`` best hits of each query (best first), after checking the index is the model's."""
    info = index.require_info()
    check_index_model(index, info, model)
    if isinstance(queries, np.ndarray):
        queries = list(queries)
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise DataError(f"queries are a list of objects, got {type(queries).__name__}; for one query write [query]")
    if not queries:
        return []
    vectors = encode_objects(model, queries, _side(model, None, "query"), batch_size)
    return search_vectors(index, vectors, k, where)


def search_vectors(index: VectorIndex, vectors: np.ndarray, k: int, where: Mapping[str, Any] | None = None) -> list[list[Hit]]:
    """Search already-encoded query vectors (the HTTP server encodes in micro-batches first)."""
    return index.search(vectors, k, where)


# -------------------------------------------------------------------------------------- evaluation
def rank_through_index(model: Any, index: VectorIndex, queries: Sequence[Any], candidates: Sequence[Any],
                       depth: int | None = None, batch_size: int = 64) -> list[list[int]]:
    """Candidate positions ranked for each query by the index (the candidates are upserted with
    their positions as ids, idempotently). ``depth``: how many per query (all by default)."""
    records = [{"obj": candidate, "position": i} for i, candidate in enumerate(candidates)]
    index_records(model, index, records, id_field="position", payload_fields=(), encode_batch_size=batch_size)
    if index.count() != len(candidates):
        raise DataError(
            f"{index.describe()} holds {index.count()} points but there are {len(candidates)} candidates: it holds "
            "other data too; evaluate into a new collection"
        )
    depth = len(candidates) if depth is None else min(depth, len(candidates))
    vectors = encode_objects(model, queries, _side(model, None, "query"), batch_size)
    rankings = []
    for start in range(0, len(vectors), 256):
        for hits in index.search(vectors[start:start + 256], depth):
            rankings.append([int(hit.id) for hit in hits])
    return rankings


def exact_rankings(model: Any, queries: Sequence[Any], candidates: Sequence[Any], depth: int, batch_size: int = 64) -> list[list[int]]:
    """The same rankings by an exact torch search (the model's distance, ties by position)."""
    query_side, candidate_side = ("query", "document") if getattr(model, "sides", ()) else (None, None)
    q = model.encode(list(queries), batch_size=batch_size, to_numpy=False, side=query_side)
    c = model.encode(list(candidates), batch_size=batch_size, to_numpy=False, side=candidate_side)
    scores = resolve_distance(model.distance).similarity_matrix(q, c)
    return torch.argsort(scores, dim=1, descending=True, stable=True)[:, :depth].tolist()


def evaluate_through_index(model: Any, task: Any, index: VectorIndex, ks: Sequence[int] = (1, 5, 10),
                           depth: int | None = None, batch_size: int = 64,
                           metrics: Sequence[Any] | None = None) -> dict[str, Any]:
    """Retrieval metrics of ``task`` (a ``RetrievalTask``) ranked by ``index`` rather than by exact
    search, scored by the one ranking engine under the names of ``simplug evaluate``; with
    ``recall_vs_exact@k``, the share of the exact top-k that the index returned (1.0 for an exact
    backend)."""
    built = build_metrics(metrics if metrics is not None else default_metric_specs(task.kind, ks))
    rankings = rank_through_index(model, index, task.queries, task.candidates, depth, batch_size)
    n_candidates = len(task.candidates)
    # the index's order as distances: its i-th hit at distance i, what it did not return after all
    # of them (tied, so in index order)
    positions = torch.full((len(rankings), n_candidates), float(n_candidates))
    for row, ranked in enumerate(rankings):
        positions[row, ranked] = torch.arange(len(ranked), dtype=torch.float32)
    result = score_blocks(built, torch.arange(len(rankings)), lambda rows: positions[rows].clone(), task.relevant,
                          exclude_self=task.exclude_self, query_groups=task.query_groups,
                          candidate_groups=task.candidate_groups)
    k = max(ks)
    exact = exact_rankings(model, task.queries, task.candidates, k, batch_size)
    overlap = [len(set(found[:k]) & set(truth)) / len(truth) for found, truth in zip(rankings, exact) if truth]
    result[f"recall_vs_exact@{k}"] = float(np.mean(overlap)) if overlap else 1.0
    return result


def hits_as_json(results: list[list[Hit]]) -> list[list[dict[str, Any]]]:
    return [[hit.as_dict() for hit in hits] for hits in results]


__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_COLLECTION",
    "IndexReport",
    "check_index_model",
    "encode_objects",
    "evaluate_through_index",
    "exact_rankings",
    "hits_as_json",
    "index_records",
    "model_fingerprint",
    "open_index",
    "rank_through_index",
    "record_id",
    "search",
    "search_vectors",
]

