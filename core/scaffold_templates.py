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

from simplug.head import EncoderHead


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

from simplug.loss import PairwiseLoss


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

from simplug.encoder import Encoder


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

from simplug.distance import Distance

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
from simplug.metric import Metric, QueryBlock


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

import json
import os
from typing import Any, Hashable, Sequence

import torch

from simplug.cache import CacheBackend

_ROWS_FILE = "rows.safetensors"
_KEYS_FILE = "keys.json"


def _encode_key(key: Hashable) -> Any:
    if isinstance(key, tuple):
        return {"tuple": [_encode_key(k) for k in key]}
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    raise TypeError(f"cache keys must be str, int, float, bool, None or tuples of them, got {type(key).__name__}")


def _decode_key(key: Any) -> Hashable:
    return tuple(_decode_key(k) for k in key["tuple"]) if isinstance(key, dict) else key


class $class_name(CacheBackend):
    """Embeddings in memory; with ``directory`` they are also kept on disk (safetensors + JSON
    keys), written by ``close()`` and read back by the next instance over the same directory.
    Nothing is ever unpickled."""

    def __init__(self, embedding_size: int, dtype: torch.dtype = torch.float32, directory: str | None = None):
        super().__init__(embedding_size, dtype)
        self.directory = directory
        self.persistent = directory is not None
        self._data = torch.empty(0, self.embedding_size, dtype=dtype)
        if directory is not None and os.path.exists(os.path.join(directory, _KEYS_FILE)):
            self._read()

    def put(self, keys: Sequence[Hashable], embeddings: torch.Tensor) -> None:
        if tuple(embeddings.shape) != (len(keys), self.embedding_size):
            raise ValueError(f"expected embeddings of shape ({len(keys)}, {self.embedding_size}), "
                             f"got {tuple(embeddings.shape)}")
        rows = embeddings.detach().to(device="cpu", dtype=self.dtype)
        fresh = []
        for key, row in zip(keys, rows):
            if key in self._index:
                self._data[self._index[key]] = row
            else:
                self._index[key] = len(self._index)
                fresh.append(row)
        if fresh:
            self._data = torch.cat([self._data, torch.stack(fresh)])

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        return self._data.index_select(0, indices.cpu())

    def close(self) -> None:
        """Write the rows to ``directory`` (nothing to do without one)."""
        if self.directory is None:
            return
        from safetensors.torch import save_file

        os.makedirs(self.directory, exist_ok=True)
        keys = sorted(self._index, key=self._index.__getitem__)
        save_file({"rows": self._data.contiguous()}, os.path.join(self.directory, _ROWS_FILE))
        with open(os.path.join(self.directory, _KEYS_FILE), "w", encoding="utf-8") as fh:
            json.dump([_encode_key(k) for k in keys], fh)

    def _read(self) -> None:
        from safetensors.torch import load_file

        with open(os.path.join(self.directory, _KEYS_FILE), encoding="utf-8") as fh:
            keys = [_decode_key(k) for k in json.load(fh)]
        data = load_file(os.path.join(self.directory, _ROWS_FILE))["rows"]
        if tuple(data.shape) != (len(keys), self.embedding_size):
            raise ValueError(f"the cache in {self.directory} has rows of shape {tuple(data.shape)}, expected "
                             f"({len(keys)}, {self.embedding_size}); delete it to rebuild")
        self._data = data.to(self.dtype)
        self._index = {key: i for i, key in enumerate(keys)}
'''

CACHE_TESTS = _TEST_HEADER + '''

def test_keeps_the_cache_contract_in_memory():
    check_cache_backend(lambda: $class_name(embedding_size=6), name="$component")


def test_keeps_the_cache_contract_on_disk(tmp_path):
    check_cache_backend(lambda: $class_name(embedding_size=6, directory=str(tmp_path / "cache")), name="$component")


def test_half_precision_rows():
    cache = $class_name(embedding_size=3, dtype=torch.float16)
    cache.put(["x"], torch.tensor([[0.1, 0.2, 0.3]]))
    assert cache.get(["x"]).dtype == torch.float16
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
        "tests": CACHE_TESTS, "summary": "embeddings in memory, optionally kept in a directory",
        "usage": "Once installed, `simplug list --kind cache_backends` shows `$component`; choose it for a "
                 "frozen encoder's cache in your model's `configure_caches`.",
    },
}
