"""Held-out evaluation and baselines, against slow plain-Python references."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from simplug import SimilarityGroupSample, SimilarityPairSample, TrainableModel
from simplug.evaluation.baselines import (
    NEAREST_EXAMPLE,
    UNTRAINED,
    baselines,
    encoder_only,
    evaluate_heldout,
    format_comparison,
    nearest_example,
)
from simplug.errors import DataError
from simplug.plugins.encoders.torch_module import TorchModuleEncoder


def cosine(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def slow_group_metrics(q, qg, p, pg, k):
    """Held-out queries against a labelled pool; queries whose group is not in the pool count nowhere."""
    p1 = rp = acc = 0.0
    n = 0
    for i in range(len(q)):
        ranked = sorted(range(len(p)), key=lambda j: (-cosine(q[i], p[j]), j))
        labels = [int(pg[j]) for j in ranked]
        r = labels.count(int(qg[i]))
        if not r:
            continue
        n += 1
        p1 += labels[0] == int(qg[i])
        rp += sum(l == int(qg[i]) for l in labels[:r]) / r
        votes, summed, first = {}, {}, {}
        for position, j in enumerate(ranked[:k]):
            label = int(pg[j])
            votes[label] = votes.get(label, 0) + 1
            summed[label] = summed.get(label, 0.0) + cosine(q[i], p[j])
            first.setdefault(label, position)
        # most votes; a tie goes to the group with the larger summed similarity, then the nearer one
        acc += min(votes, key=lambda g: (-votes[g], -summed[g], first[g])) == int(qg[i])
    return {"retrieval_precision@1": p1 / n, "retrieval_r_precision": rp / n, f"knn_accuracy@{k}": acc / n}


def group_samples(points, groups):
    return [SimilarityGroupSample(x, int(g)) for x, g in zip(points, groups)]


@pytest.mark.parametrize("seed", [0, 1])
def test_group_metrics_match_a_slow_loop(seed):
    g = torch.Generator().manual_seed(seed)
    pool, pool_groups = torch.randn(40, 5, generator=g), torch.randint(0, 4, (40,), generator=g)
    queries, query_groups = torch.randn(15, 5, generator=g), torch.randint(0, 5, (15,), generator=g)
    model = identity_model(size=5)
    ours = evaluate_heldout(model, group_samples(pool, pool_groups), group_samples(queries, query_groups), knn=5)
    reference = slow_group_metrics(queries, query_groups, pool, pool_groups, 5)
    assert ours == pytest.approx(reference, abs=1e-6)


def test_pair_metrics_match_a_slow_loop():
    g = torch.Generator().manual_seed(3)
    queries, documents = torch.randn(12, 4, generator=g), torch.randn(30, 4, generator=g)
    targets = torch.randint(0, 30, (12,), generator=g)
    held = [SimilarityPairSample(queries[i], documents[targets[i]]) for i in range(12)]
    train = [SimilarityPairSample(torch.zeros(4) + i, documents[i]) for i in range(30)]  # every document is known
    ranks = []
    for i in range(12):
        answer = cosine(queries[i], documents[targets[i]])
        # rank = 1 + documents more similar than the answer (random data: no ties)
        ranks.append(1 + sum(cosine(queries[i], d) > answer for d in documents))
    ours = evaluate_heldout(identity_model(size=4), train, held)
    assert ours["retrieval_precision@1"] == pytest.approx(sum(r == 1 for r in ranks) / 12)
    assert ours["retrieval_reciprocal_rank"] == pytest.approx(sum(1 / r for r in ranks) / 12, abs=1e-6)
    assert ours["recall@10"] == pytest.approx(sum(r <= 10 for r in ranks) / 12)


def identity_model(heads=None, head="empty", size=3):
    config = {"encoder": TorchModuleEncoder(nn.Identity(), embedding_size=size), "loss": "multiple_negatives_ranking"}
    config.update({"heads": heads} if heads else {"head": head})
    return TrainableModel.from_config(config)


def word_pairs():
    # three "definitions" (documents) and their "words" (queries), as 3-d vectors
    d = {"A": [1.0, 0.0, 0.0], "B": [0.0, 1.0, 0.0], "C": [0.0, 0.0, 1.0]}
    train = [
        SimilarityPairSample([0.9, 0.1, 0.0], d["A"]),
        SimilarityPairSample([0.0, 0.2, 1.0], d["B"]),  # a word far from its definition
        SimilarityPairSample([0.1, 0.0, 0.9], d["C"]),
        SimilarityPairSample([0.5, 0.5, 0.0], d["A"], score=0.0),  # a negative: ignored
    ]
    held = [SimilarityPairSample([0.1, 0.3, 0.9], d["B"]), SimilarityPairSample([1.0, 0.0, 0.1], d["A"])]
    return train, held


SMALL = ["retrieval_precision", "retrieval_reciprocal_rank", {"name": "recall", "k": 3}]  # three documents


def test_pairs_evaluate_queries_against_every_known_document():
    train, held = word_pairs()
    metrics = evaluate_heldout(identity_model(), train, held, metrics=SMALL)
    # query 1 is nearest to C (rank 2 for B), query 2 finds A
    assert metrics == pytest.approx({"retrieval_precision@1": 0.5, "retrieval_reciprocal_rank": 0.75, "recall@3": 1.0})
    with pytest.raises(DataError, match="recall@10 needs at least k=10 candidates per query but there are only 3"):
        evaluate_heldout(identity_model(), train, held)


def test_nearest_example_for_pairs_takes_the_answer_of_the_nearest_training_query():
    train, held = word_pairs()
    lookup = nearest_example(identity_model(), train, held, metrics=SMALL)
    # query 1's nearest training word is the one labelled B; query 2's is the one labelled A
    assert lookup == {"retrieval_precision@1": 1.0, "retrieval_reciprocal_rank": 1.0, "recall@3": 1.0}


def test_sided_models_encode_queries_and_documents_with_their_own_heads():
    train, held = word_pairs()
    model = identity_model(heads={"query": {"name": "stacked_projection", "output_sizes": [3]}, "document": "empty"})
    with torch.no_grad():  # the query head maps every query onto document B
        layer = model.model.side_heads["query"]._stack[0]
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    assert evaluate_heldout(model, train, held, metrics=SMALL)["retrieval_precision@1"] == 0.5  # B right, A wrong


def test_baselines_ignore_the_head_and_groups_route_by_nearest_examples():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 3, generator=g) * 3
    train = [SimilarityGroupSample(centres[i % 3] + torch.randn(3, generator=g), i % 3) for i in range(30)]
    held = [SimilarityGroupSample(centres[i % 3] + torch.randn(3, generator=g), i % 3) for i in range(9)]
    model = identity_model(head={"name": "stacked_projection", "output_sizes": [3]})
    rows = baselines(model, train, held, knn=5)
    assert rows[UNTRAINED] == evaluate_heldout(encoder_only(model), train, held, knn=5)
    assert rows[NEAREST_EXAMPLE] == rows[UNTRAINED]  # for groups, routing by nearest examples is retrieval
    assert rows[UNTRAINED] != evaluate_heldout(model, train, held, knn=5)  # the random head differs
    table = format_comparison({"fine-tuned": evaluate_heldout(model, train, held, knn=5), **rows})
    assert table.splitlines()[0].split() == ["retrieval_precision@1", "retrieval_r_precision", "knn_accuracy@5"]
    assert len(table.splitlines()) == 4 and "nearest labelled example" in table


def test_mixed_or_empty_data_is_named():
    train, held = word_pairs()
    with pytest.raises(DataError, match="SimilarityPairSample"):
        evaluate_heldout(identity_model(), [SimilarityGroupSample([0.0, 0.0, 1.0], 0)], held, metrics=SMALL)
    with pytest.raises(DataError, match="no positive score"):
        evaluate_heldout(identity_model(), train, [SimilarityPairSample([1.0, 0, 0], [1.0, 0, 0], score=0.0)], metrics=SMALL)
