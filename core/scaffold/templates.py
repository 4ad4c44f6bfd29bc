"""Per-kind templates for ``simplug new-plugin`` (``string.Template``: ``$name`` placeholders).

Each kind gives a small component that works as generated (a real starting point to edit,
not a stub) and tests that run simplug's conformance check on it plus one behaviour test.
"""
from __future__ import annotations

_INSTALLED_TEST = '''

def test_the_installed_entry_point_names_the_hooks_module():
    found = [ep for ep in entry_points(group="simplug") if ep.value == "$package.hooks"]
    assert found, "the plugin is not installed: run `pip install -e .` in the package directory"
    assert found[0].name == "$component"


def test_registered_under_its_name(isolated_registry):
    with registered_plugin(hooks, registry=isolated_registry):
        assert isolated_registry.resolve("$kind", "$component") is $class_name
'''

_TEST_HEADER = '''\
from importlib.metadata import entry_points

import torch

from simplug.testing import $check, registered_plugin

from $package import hooks
from $package.$module import $class_name
'''

HEAD = '''\
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simplug.components.head import EncoderHead


class $class_name(EncoderHead):
    """A linear projection of the encoders' embeddings to ``output_size``, optionally scaled
    to unit length (so cosine and dot-product distances agree).

    Every constructor argument goes into ``get_config_dict``: a saved model rebuilds the head
    from it before loading the weights.
    """

    def __init__(self, input_embedding_size: int, output_size: int = 64, normalize: bool = True, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)
        if not isinstance(output_size, int) or output_size <= 0:
            raise ValueError(f"output_size must be a positive int, got {output_size!r}")
        self._output_size = output_size
        self.normalize = bool(normalize)
        self.projection = nn.Linear(input_embedding_size, output_size)

    @property
    def output_size(self) -> int:
        return self._output_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        out = self.projection(input_vectors)
        return F.normalize(out, dim=-1) if self.normalize else out

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "output_size": self._output_size, "normalize": self.normalize}
'''

HEAD_TESTS = _TEST_HEADER + '''

def test_keeps_the_head_contract():
    check_head($class_name(input_embedding_size=12, output_size=8), name="$component")
    check_head($class_name(input_embedding_size=12, output_size=8, normalize=False, dropout=0.1), name="$component")


def test_normalized_outputs_have_unit_length():
    head = $class_name(input_embedding_size=12, output_size=8, normalize=True)
    norms = head(torch.randn(5, 12)).norm(dim=1)
    assert torch.allclose(norms, torch.ones(5), atol=1e-5)
''' + _INSTALLED_TEST

LOSS = '''\
from __future__ import annotations

from typing import Any

import torch

from simplug.components.loss import PairwiseLoss


class $class_name(PairwiseLoss):
    """Pair loss that regresses each pair's similarity on its score.

    ``mean((similarity(a, b) - score) ** 2)`` over the pairs of the batch, with the similarity of
    ``distance_metric_name`` (cosine: -1..1). Unlike losses that read the score as
    same/different, it learns graded scores such as 0.3 or 0.8.
    """

    def __init__(self, distance_metric_name: str = "cosine"):
        super().__init__(distance_metric_name=distance_metric_name)

    def forward(  # type: ignore[override]
        self,
        embeddings: torch.Tensor,
        pairs: torch.LongTensor,
        labels: torch.Tensor,
        subgroups: torch.Tensor,
    ) -> torch.Tensor:
        similarity = self.distance_metric.similarity(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]])
        return (similarity - labels.to(similarity.dtype)).pow(2).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return super().get_config_dict()
'''

LOSS_TESTS = _TEST_HEADER + '''

def test_keeps_the_loss_contract():
    check_loss($class_name(), name="$component")
    check_loss($class_name(distance_metric_name="euclidean"), name="$component")


def test_matches_a_slow_reference():
    torch.manual_seed(0)
    embeddings = torch.randn(6, 4)
    pairs = torch.tensor([[0, 3], [1, 4], [2, 5]])
    labels = torch.tensor([1.0, 0.2, 0.7])
    expected = sum(
        (torch.cosine_similarity(embeddings[a], embeddings[b], dim=0) - s) ** 2 for (a, b), s in zip(pairs.tolist(), labels)
    ) / 3
    value = $class_name()(embeddings, pairs, labels, torch.zeros(6, dtype=torch.long))
    assert torch.allclose(value, expected, atol=1e-6)
''' + _INSTALLED_TEST

ENCODER = '''\
from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import torch
from torch import nn

from simplug.components.encoder import Encoder


class $class_name(Encoder):
    """Text encoder: the mean of learned vectors for the character n-grams of each text.

    N-grams are hashed into ``num_buckets`` rows of an embedding table. It needs no download and
    handles typos and unseen words, which makes it a fair baseline for short texts (names,
    titles, queries) and a starting point for your own encoder. Every constructor argument is
    in ``get_config_dict``, so the default ``save``/``load`` of ``Encoder`` restore it.
    """

    def __init__(self, embedding_size: int = 64, num_buckets: int = 4096, ngram: int = 3,
                 trainable: bool = True, seed: int = 0):
        super().__init__()
        for arg, value in (("embedding_size", embedding_size), ("num_buckets", num_buckets), ("ngram", ngram)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        self._embedding_size = embedding_size
        self.num_buckets = num_buckets
        self.ngram = ngram
        self.seed = seed
        self._trainable = bool(trainable)
        self.table = nn.EmbeddingBag(num_buckets, embedding_size, mode="mean")
        with torch.no_grad():
            self.table.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed))
        self.disable_gradients_if_required()

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def embedding_size(self) -> int:
        return self._embedding_size

    def bucket_ids(self, text: str) -> list[int]:
        padded = f"<{text.lower()}>"
        grams = [padded[i : i + self.ngram] for i in range(max(1, len(padded) - self.ngram + 1))]
        # crc32, not hash(): str hashes change with every process, the buckets must not
        return [zlib.crc32(gram.encode("utf-8")) % self.num_buckets for gram in grams]

    def collate(self, texts: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, offsets = [], []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"{type(self).__name__} encodes strings, got {type(text).__name__}")
            offsets.append(len(ids))
            ids.extend(self.bucket_ids(text))
        return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)

    def get_collate_fn(self) -> Callable[[Sequence[Any]], tuple[torch.Tensor, torch.Tensor]]:
        return self.collate

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, offsets = batch
        return self.table(ids, offsets)

    def get_config_dict(self) -> dict[str, Any]:
        return {"embedding_size": self._embedding_size, "num_buckets": self.num_buckets,
                "ngram": self.ngram, "trainable": self._trainable, "seed": self.seed}
'''

ENCODER_TESTS = _TEST_HEADER + '''

TEXTS = ["red apple", "green apple", "a bicycle", ""]


def test_keeps_the_encoder_contract():
    check_encoder($class_name(embedding_size=16, num_buckets=256), TEXTS, name="$component")
    check_encoder($class_name(embedding_size=16, num_buckets=256, trainable=False), TEXTS, name="$component")


def test_shared_ngrams_make_texts_closer():
    encoder = $class_name(embedding_size=32, num_buckets=1024)
    a, b, c = encoder(encoder.collate(["strawberry jam", "strawberry jelly", "motor oil"]))
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b, dim=0) > cos(a, c, dim=0)
''' + _INSTALLED_TEST

DISTANCE = '''\
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from simplug.components.distance import Distance

# arccos has an infinite slope at +-1; staying this far inside keeps gradients finite when two
# embeddings point the same way
_EDGE = 1e-6


class $class_name(Distance):
    """Angular distance: the angle between two vectors divided by pi (0..1), a true metric
    unlike 1 - cosine. Similarity is 1 - distance."""

    def _cosine_matrix(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x_n = F.normalize(x, dim=-1, eps=1e-8)
        y_n = x_n if y is None else F.normalize(y, dim=-1, eps=1e-8)
        return x_n @ y_n.T

    def distance_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.arccos(self._cosine_matrix(x, y).clamp(-1 + _EDGE, 1 - _EDGE)) / math.pi

    def similarity_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 1.0 - self.distance_matrix(x, y)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cosine = F.cosine_similarity(x, y, dim=-1, eps=1e-8)
        return torch.arccos(cosine.clamp(-1 + _EDGE, 1 - _EDGE)) / math.pi

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.distance(x, y)
'''

DISTANCE_TESTS = _TEST_HEADER + '''

def test_keeps_the_distance_contract():
    check_distance($class_name(), name="$component")


def test_right_angle_is_one_half_and_opposite_is_one():
    x = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([[0.0, 2.0], [-3.0, 0.0]])
    assert torch.allclose($class_name().distance_matrix(x, y), torch.tensor([[0.5, 1.0]]), atol=1e-3)
''' + _INSTALLED_TEST

METRIC = '''\
from __future__ import annotations

from typing import Any

import torch

from simplug.errors import DataError
from simplug.components.metric import Metric
from simplug.components.ranking import QueryBlock


class $class_name(Metric):
    """Hit rate at k: the share of queries with at least one relevant object among their k
    nearest neighbours (one relevant hit is enough, unlike precision@k)."""

    def __init__(self, k: int = 5, distance_metric_name: str = "cosine"):
        super().__init__(distance_metric_name=distance_metric_name)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.k = k

    @property
    def name(self) -> str:
        return f"$component@{self.k}"

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "k": self.k}

    def depth(self, block: QueryBlock) -> int:
        # how many nearest candidates per query to rank; the block ranks them once for all metrics
        if self.k > block.n_candidates:  # every object but the query itself
            raise DataError(
                f"{self.name} needs at least {self.k} candidates per query, got {block.n_candidates}: "
                "lower k or evaluate on more objects"
            )
        return self.k

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        # one value per query of the block, from that query's row only: a data set is
        # evaluated a few queries at a time and the values are averaged over all of them
        return block.ranked_relevance(self.depth(block)).any(dim=1).float()
'''

METRIC_TESTS = _TEST_HEADER + '''

def test_keeps_the_metric_contract():
    check_metric($class_name(k=3), name="$component")


def test_counts_a_query_once_it_has_one_relevant_neighbour():
    embeddings = torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1], [-1.0, 0.2]])
    groups = torch.tensor([0, 0, 1, 1, 2])  # the last object has nothing relevant: skipped
    assert $class_name(k=1).compute(embeddings, {"groups": groups}).item() == 1.0
    flipped = torch.tensor([0, 1, 0, 1, 2])
    assert $class_name(k=1).compute(embeddings, {"groups": flipped}).item() == 0.0
''' + _INSTALLED_TEST

CACHE = '''\
from __future__ import annotations

import os

import torch

from simplug.components.cache_backend import CacheBackend
from simplug.errors import ConfigError

# the budget in bytes, e.g. 2000000000, 512M or 8G; unset: half the machine's memory
BUDGET_VARIABLE = "$component".upper() + "_MAX_BYTES"
_SUFFIXES = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(text: str) -> int:
    """``"512M"`` -> 536870912; plain digits are bytes."""
    value = text.strip().upper().removesuffix("B")
    scale = _SUFFIXES.get(value[-1:], 1)
    digits = value[:-1] if scale != 1 else value
    if not digits.isdigit():
        raise ConfigError(f"{BUDGET_VARIABLE}={text!r} is not a size; write bytes, or a number with K, M, G or T")
    return int(digits) * scale


def default_budget() -> int | None:
    if os.environ.get(BUDGET_VARIABLE):
        return parse_bytes(os.environ[BUDGET_VARIABLE])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): no budget
        return None


class $class_name(CacheBackend):
    """Rows in one CPU tensor, within a memory budget.

    The cache builds a backend as ``$class_name(num_rows, embedding_size, dtype, device)``
    before the fill, so a table over the budget (``max_bytes``, else the environment variable
    named by ``BUDGET_VARIABLE``, else half the machine's memory) is refused in seconds, with its
    size and the ways out, instead of the machine swapping or running out of memory after
    minutes of encoding. The rest of the contract (``write``, ``rows``, the cache file format
    of ``save_file``/``load_file``) is the base class's, for a table in ``storage``.
    """

    def __init__(self, num_rows: int, embedding_size: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", path: str | None = None, max_bytes: int | None = None):
        self.max_bytes = default_budget() if max_bytes is None else int(max_bytes)
        super().__init__(num_rows, embedding_size, dtype, device, path)  # calls allocate()

    def allocate(self) -> torch.Tensor:
        if self.max_bytes is not None and self.payload_bytes > self.max_bytes:
            raise ConfigError(
                f"the $component cache needs {self.payload_bytes} bytes ({self.num_rows} rows of "
                f"{self.embedding_size} {self.dtype} values), over its budget of {self.max_bytes} bytes; "
                f"raise {BUDGET_VARIABLE}, halve the size with CacheConfig(half_precision=True), "
                "or use the 'disk' cache backend"
            )
        # zeros: under several processes each fills a share of the rows and the tables are summed
        return torch.zeros(self.num_rows, self.embedding_size, dtype=self.dtype)
'''

CACHE_TESTS = _TEST_HEADER.replace("import torch\n", "import pytest\nimport torch\n").replace(
    "from simplug.testing", "from simplug.errors import ConfigError\nfrom simplug.testing"
).replace("\nfrom $package.$module import $class_name", "\nfrom $package.$module import BUDGET_VARIABLE, $class_name") + '''

def test_keeps_the_cache_contract():
    check_cache_backend($class_name, name="$component")
    # with a budget that the check's tables fit in (the cache passes only the base arguments)
    check_cache_backend(lambda *args, **kwargs: $class_name(*args, max_bytes=120, **kwargs), name="$component")


def test_a_table_over_the_budget_is_refused_before_the_fill(monkeypatch):
    with pytest.raises(ConfigError, match="needs 4000 bytes .* over its budget of 3999 bytes"):
        $class_name(100, 10, torch.float32, max_bytes=3999)
    monkeypatch.setenv(BUDGET_VARIABLE, "2K")
    half = $class_name(100, 10, torch.float16)  # 2000 bytes fit in 2048
    assert half.payload_bytes == 2000 and half.storage.dtype == torch.float16
    with pytest.raises(ConfigError, match=f"raise {BUDGET_VARIABLE}, halve the size"):
        $class_name(100, 10, torch.float32)
    monkeypatch.setenv(BUDGET_VARIABLE, "lots")
    with pytest.raises(ConfigError, match="is not a size"):
        $class_name(1, 1)
''' + _INSTALLED_TEST

INDEX = '''\
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from simplug.components.index import CollectionNotFoundError, Hit, IndexInfo, VectorIndex, check_search_arguments


class $class_name(VectorIndex):
    \"\"\"An exact index in a folder: each collection is ``<collection>.npz`` (vectors) and
    ``<collection>.json`` (info, ids, payloads), rewritten on every upsert and searched by one
    matrix product. A starting point: swap the search for faiss, usearch or LanceDB.
    \"\"\"

    exact = True
    distances = ("cosine", "dot_product", "euclidean", "manhattan")

    def __init__(self, location: str, collection: str = "simplug", **options: Any):
        super().__init__(location, collection, **options)
        os.makedirs(location, exist_ok=True)
        self._meta_path = os.path.join(location, collection + ".json")
        self._vectors_path = os.path.join(location, collection + ".npz")

    def _load(self) -> tuple[dict[str, Any], np.ndarray]:
        if not os.path.exists(self._meta_path):
            raise CollectionNotFoundError(f"there is no {self.describe()}")
        with open(self._meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
        with np.load(self._vectors_path) as data:
            return meta, data["vectors"]

    def info(self) -> IndexInfo | None:
        if not os.path.exists(self._meta_path):
            return None
        return IndexInfo.from_dict(self._load()[0]["info"])

    def create(self, info: IndexInfo) -> None:
        if os.path.exists(self._meta_path):
            raise ValueError(f"{self.describe()} exists already")
        self._save({"info": info.as_dict(), "ids": [], "payloads": []}, np.zeros((0, info.dimension), np.float32))

    def _save(self, meta: dict[str, Any], vectors: np.ndarray) -> None:
        np.savez(self._vectors_path + ".tmp.npz", vectors=vectors)
        os.replace(self._vectors_path + ".tmp.npz", self._vectors_path)
        with open(self._meta_path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
        os.replace(self._meta_path + ".tmp", self._meta_path)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        meta, stored = self._load()
        rows = {point: i for i, point in enumerate(meta["ids"])}
        stored = stored.copy()
        for point, vector, payload in zip(ids, np.asarray(vectors, np.float32), payloads):
            if str(point) in rows:  # an id that exists is replaced: re-indexing never duplicates
                stored[rows[str(point)]] = vector
                meta["payloads"][rows[str(point)]] = dict(payload)
            else:
                rows[str(point)] = len(meta["ids"])
                meta["ids"].append(str(point))
                meta["payloads"].append(dict(payload))
                stored = np.vstack([stored, vector[None, :]])
        self._save(meta, stored)

    def search(self, vectors: np.ndarray, k: int, where: Mapping[str, Any] | None = None) -> list[list[Hit]]:
        meta, stored = self._load()
        info = IndexInfo.from_dict(meta["info"])
        queries = check_search_arguments(vectors, k, info.dimension, len(meta["ids"]))
        if info.distance == "cosine":
            unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)  # noqa: E731
            scores = unit(queries) @ unit(stored).T
        elif info.distance == "dot_product":
            scores = queries @ stored.T
        elif info.distance == "euclidean":
            scores = -np.sqrt(((queries[:, None, :] - stored[None, :, :]) ** 2).sum(-1))
        else:
            scores = -np.abs(queries[:, None, :] - stored[None, :, :]).sum(-1)
        keep = np.array([all(p.get(f) == v for f, v in (where or {}).items()) for p in meta["payloads"]], dtype=bool)
        results = []
        for row in scores:
            order = [j for j in np.argsort(-row, kind="stable") if keep[j]][:k]
            results.append([Hit(meta["ids"][j], float(row[j]), dict(meta["payloads"][j])) for j in order])
        return results

    def count(self) -> int:
        return len(self._load()[0]["ids"]) if os.path.exists(self._meta_path) else 0
'''

INDEX_TESTS = _TEST_HEADER.replace("import torch\n", "import numpy as np\n").replace(
    "from simplug.testing import $check, registered_plugin",
    "from simplug.components.index import IndexInfo\nfrom simplug.testing import registered_plugin\n"
    "from simplug.testing.index_checks import $check",
) + '''

def test_keeps_the_index_contract():
    $check($class_name, name="$component")


def test_survives_a_reopen(tmp_path):
    index = $class_name(str(tmp_path), collection="c")
    index.create(IndexInfo(dimension=2, distance="euclidean", model_fingerprint="x"))
    index.upsert(["a", "b"], np.array([[0.0, 0.0], [3.0, 4.0]]), [{}, {"n": 1}])
    again = $class_name(str(tmp_path), collection="c")
    hits = again.search(np.array([[3.0, 3.0]]), 2)[0]
    assert [h.id for h in hits] == ["b", "a"] and hits[0].score == -1.0 and hits[0].payload == {"n": 1}
''' + _INSTALLED_TEST

_MODEL_USAGE = '''\
Once installed, name it in a model config (or `simplug list` to see it):

```python
from simplug import TrainableModel

model = TrainableModel.from_config({
$config
})
```'''


def _usage(config: str) -> str:
    return _MODEL_USAGE.replace("$config", config)


COMPONENTS: dict[str, dict[str, str]] = {
    "heads": {
        "module": "head", "suffix": "Head", "check": "check_head", "component": HEAD, "tests": HEAD_TESTS,
        "summary": "linear projection, optionally to unit length",
        "usage": _usage('    "encoder": my_encoder,\n    "head": {"name": "$component", "output_size": 64},\n'
                        '    "loss": "triplet",'),
    },
    "losses": {
        "module": "loss", "suffix": "Loss", "check": "check_loss", "component": LOSS, "tests": LOSS_TESTS,
        "summary": "pairs: squared error between similarity and the pair's score",
        "usage": _usage('    "encoder": my_encoder,\n    "head": "skip_connection",\n    "loss": {"name": "$component"},'),
    },
    "encoders": {
        "module": "encoder", "suffix": "Encoder", "check": "check_encoder", "component": ENCODER,
        "tests": ENCODER_TESTS, "summary": "texts: mean of hashed character n-gram vectors",
        "usage": _usage('    "encoder": {"name": "$component", "embedding_size": 64},\n    "head": "skip_connection",\n'
                        '    "loss": "triplet",'),
    },
    "distances": {
        "module": "distance", "suffix": "Distance", "check": "check_distance", "component": DISTANCE,
        "tests": DISTANCE_TESTS, "summary": "angle between vectors / pi",
        "usage": _usage('    "encoder": my_encoder,\n    "head": "skip_connection",\n'
                        '    "loss": {"name": "triplet", "distance_metric_name": "$component"},'),
    },
    "metrics": {
        "module": "metric", "suffix": "Metric", "check": "check_metric", "component": METRIC, "tests": METRIC_TESTS,
        "summary": "share of queries with a relevant object among the k nearest",
        "usage": _usage('    "encoder": my_encoder,\n    "loss": "triplet",\n    "metrics": [{"name": "$component", "k": 5}],'),
    },
    "cache_backends": {
        "module": "cache", "suffix": "Cache", "check": "check_cache_backend", "component": CACHE,
        "tests": CACHE_TESTS, "summary": "embeddings in CPU memory, within a memory budget",
        "usage": "Once installed, `simplug list --kind cache_backends` shows `$component`; name it as a "
                 "frozen encoder's cache type: `configure_caches` returning `CacheConfig(cache_type=\"$component\")`.",
    },
    "indexes": {
        "module": "index", "suffix": "Index", "check": "check_index", "component": INDEX,
        "tests": INDEX_TESTS, "summary": "exact search over vectors kept in a folder (numpy)",
        "usage": "Once installed, `simplug list --kind indexes` shows `$component`; index and search with it: "
                 "`simplug index MODEL DATA --index FOLDER --backend $component`, "
                 "`simplug search MODEL FOLDER \"a query\" --backend $component`.",
    },
}
