"""The one ranking engine (simplug.components.ranking) against a slow, obvious reference.

Every protocol (held-out groups against training candidates, groups leave-one-out, pairs)
and every ranking metric is compared with plain Python: for each query, sort the candidate
indices by (distance, index), drop the query itself when it is one of the candidates, and
apply the textbook definition. The embeddings are small integers under the Manhattan
distance, so distances are exact and ties are everywhere: the tie rule (equal distance ->
lower candidate index first) is what is tested. Then every path (Metric.compute, Evaluator,
HeldOutScorer, baselines) must give the same numbers for the same protocol.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from simplug import Evaluator, SimilarityGroupSample, SimilarityPairSample, TrainableModel
from simplug.components.ranking import nearest
from simplug.errors import DataError
from simplug.evaluation.baselines import evaluate_heldout
from simplug.evaluation.heldout import HeldOutScorer, retrieval_task
from simplug.evaluation.retrieval import RetrievalTask, build_metrics, score_task
from simplug.plugins.encoders.torch_module import TorchModuleEncoder

DISTANCE = "manhattan"
RANKING = [
    {"name": "retrieval_precision", "k": 1},
    {"name": "retrieval_precision", "k": 3},
    {"name": "recall", "k": 1},
    {"name": "recall", "k": 4},
    {"name": "retrieval_reciprocal_rank"},
    {"name": "retrieval_r_precision"},
    {"name": "map@r"},
]
GROUP_ONLY = [{"name": "knn_accuracy", "k": 1}, {"name": "knn_accuracy", "k": 4}, {"name": "knn_accuracy", "k": 7}]


# ------------------------------------------------------------------------- the reference
def manhattan(a, b):
    return sum(abs(x - y) for x, y in zip(a, b))


def reference(queries, candidates, relevant, exclude_self=False, query_groups=None, candidate_groups=None):
    """{metric name: mean} with Python lists. ``relevant(i)``: the set of candidate indices
    relevant to query i (before leaving the query itself out)."""
    values: dict[str, list[float]] = {}

    def add(name, v):
        values.setdefault(name, []).append(float(v))

    for i, q in enumerate(queries):
        pool = [j for j in range(len(candidates)) if not (exclude_self and j == i)]
        rel = {j for j in relevant(i) if j in pool}
        if not rel:
            continue  # a query with nothing to find counts nowhere
        dist = {j: manhattan(q, candidates[j]) for j in pool}
        ranked = sorted(pool, key=lambda j: (dist[j], j))
        hits = [j in rel for j in ranked]
        r = len(rel)
        for k in (1, 3):
            add(f"retrieval_precision@{k}", sum(hits[:k]) / k)
        for k in (1, 4):
            add(f"recall@{k}", any(hits[:k]))
        add("retrieval_reciprocal_rank", 1 / (hits.index(True) + 1))
        add("retrieval_r_precision", sum(hits[:r]) / r)
        add("map@r", sum(sum(hits[: n + 1]) / (n + 1) for n in range(r) if hits[n]) / r)
        if query_groups is not None:
            for k in (1, 4, 7):
                votes: dict[int, int] = {}
                summed: dict[int, float] = {}
                first: dict[int, int] = {}
                for position, j in enumerate(ranked[:k]):
                    g = candidate_groups[j]
                    votes[g] = votes.get(g, 0) + 1
                    summed[g] = summed.get(g, 0.0) + dist[j]
                    first.setdefault(g, position)
                # most votes, then the smaller summed distance, then the nearer candidate
                winner = min(votes, key=lambda g: (-votes[g], summed[g], first[g]))
                add(f"knn_accuracy@{k}", winner == query_groups[i])
    return {name: sum(v) / len(v) for name, v in values.items()}


def integer_points(n, seed, dim=2, high=3):
    """Few distinct values: many equal distances."""
    return torch.randint(0, high, (n, dim), generator=torch.Generator().manual_seed(seed)).float()


def group_samples(n, seed, n_groups=4):
    points = integer_points(n, seed)
    groups = torch.randint(0, n_groups, (n,), generator=torch.Generator().manual_seed(seed + 100))
    return [SimilarityGroupSample(p.tolist(), int(g)) for p, g in zip(points, groups)]


def engine(task, queries, candidates, specs, block_size):
    return score_task(task, queries, candidates, build_metrics(specs, DISTANCE), block_size=block_size)


# ------------------------------------------------------------------------- the protocols
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_groups_against_training_candidates_match_the_reference(seed, block_size):
    train, held = group_samples(40, seed), group_samples(15, seed + 10, n_groups=5)  # group 4: nothing to find
    task = RetrievalTask.from_groups(held, train)
    want = reference([s.obj for s in held], [s.obj for s in train],
                     lambda i: {j for j, t in enumerate(train) if t.group == held[i].group},
                     query_groups=[s.group for s in held], candidate_groups=[s.group for s in train])
    got = engine(task, torch.tensor(task.queries), torch.tensor(task.candidates), RANKING + GROUP_ONLY, block_size)
    assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_groups_leave_one_out_match_the_reference(seed, block_size):
    held = group_samples(30, seed)
    task = RetrievalTask.from_groups(held, held, exclude_self=True)
    groups = [s.group for s in held]
    want = reference([s.obj for s in held], [s.obj for s in held],
                     lambda i: {j for j, t in enumerate(held) if t.group == held[i].group},
                     exclude_self=True, query_groups=groups, candidate_groups=groups)
    x = torch.tensor(task.queries)
    assert engine(task, x, x, RANKING + GROUP_ONLY, block_size) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_pairs_match_the_reference(seed, block_size):
    gen = torch.Generator().manual_seed(seed)
    point = {f"q{i}": p.tolist() for i, p in enumerate(integer_points(12, seed + 20))}
    point.update({f"d{i}": p.tolist() for i, p in enumerate(integer_points(20, seed + 30))})
    # queries repeat (several answers), some pairs are negatives, some documents repeat
    pairs = [SimilarityPairSample(f"q{int(a)}", f"d{int(b)}", float(s))
             for a, b, s in zip(torch.randint(0, 12, (30,), generator=gen), torch.randint(0, 20, (30,), generator=gen),
                                torch.randint(0, 3, (30,), generator=gen) > 0)]
    extra = [f"d{i}" for i in range(20)]
    task = RetrievalTask.from_pairs(pairs, extra_candidates=extra)
    queries = list(dict.fromkeys(p.obj_a for p in pairs))
    candidates = list(dict.fromkeys([p.obj_b for p in pairs] + extra))
    assert task.queries == queries and task.candidates == candidates

    def relevant(i):
        return {candidates.index(p.obj_b) for p in pairs if p.obj_a == queries[i] and p.score > 0}

    want = reference([point[q] for q in queries], [point[c] for c in candidates], relevant)
    got = engine(task, torch.tensor([point[q] for q in queries]), torch.tensor([point[c] for c in candidates]),
                 RANKING, block_size)
    assert got == pytest.approx(want, abs=1e-12)


def test_knn_accuracy_needs_groups():
    pairs = [SimilarityPairSample("a", "b"), SimilarityPairSample("c", "d")]
    task = RetrievalTask.from_pairs(pairs)
    x = torch.eye(2)
    with pytest.raises(DataError, match="knn_accuracy@1 votes with the candidates' groups"):
        engine(task, x, x, [{"name": "knn_accuracy", "k": 1}], 10)


def test_nearest_keeps_the_lower_index_among_equal_distances():
    distances = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.5]])
    assert nearest(distances, 3).tolist() == [[1, 3, 7]]
    assert nearest(distances, 5).tolist() == [[1, 3, 7, 0, 2]]


# ------------------------------------------------------------------------- one number per protocol
def identity_model():
    encoder = TorchModuleEncoder(nn.Identity(), embedding_size=2)
    return TrainableModel.from_config({"encoder": encoder, "head": "empty", "loss": "triplet"})


def test_every_path_gives_the_same_numbers_for_the_same_protocol():
    held, train = group_samples(30, 5), group_samples(40, 6)
    model = identity_model()
    specs = RANKING + GROUP_ONLY
    names = list(build_metrics(specs, DISTANCE))
    x = torch.tensor([s.obj for s in held])
    groups = {"groups": torch.tensor([s.group for s in held])}
    # leave-one-out: the Evaluator, each Metric.compute, and the held-out scorer of `simplug evaluate`
    by_evaluator = Evaluator([{**s, "distance_metric_name": DISTANCE} for s in specs], block_size=4).compute(x, groups)
    by_compute = {name: float(m.compute(x, groups)) for name, m in build_metrics(specs, DISTANCE).items()}
    scorer = HeldOutScorer(retrieval_task("groups", held, held, "self"), DISTANCE, metrics=specs, block_size=9)
    by_scorer = scorer.score(model.model)
    assert list(by_evaluator) == names and list(by_scorer) == names
    assert by_scorer == by_evaluator
    assert by_compute == pytest.approx(by_evaluator, abs=1e-6)  # float32 at the end of compute
    # against training candidates: the scorer of `simplug train` and the baselines
    task = retrieval_task("groups", held, train)
    by_train = HeldOutScorer(task, DISTANCE, metrics=specs).score(model.model)
    assert evaluate_heldout(model, train, held, distance=DISTANCE, metrics=specs) == by_train


def test_leave_one_out_never_retrieves_the_query_itself():
    # two tight groups: each item's nearest other item is of its own group
    held = [SimilarityGroupSample([float(g * 10 + i), 0.0], g) for g in range(2) for i in range(3)]
    scores = HeldOutScorer(retrieval_task("groups", held, held, "self"), "euclidean",
                           metrics=["retrieval_precision", "retrieval_r_precision"]).score(identity_model().model)
    assert scores == {"retrieval_precision@1": 1.0, "retrieval_r_precision": 1.0}
