"""Which loss and settings should the category-routing example train its head with? An analysis
run by hand, not a timing: the numbers behind the loss table of
``examples/category_routing/README.md``.

For each split (``prepare_data.py``'s per-category split with ``--seed N``, made in memory), the
frozen encoder runs once over every text; each recipe then trains a ``blend`` head on the whole
training split and scores the held-out texts against the training texts (the metric names of
``simplug train``) at the listed epochs. Printed: the mean over the splits and the lowest split,
per recipe and epoch, with the number of splits where all three reach 0.80 / 0.75 / 0.80, and,
for reference, how many held-out texts scikit-learn's logistic regression on the same
embeddings routes right.

    python benchmarks/routing_losses.py [--splits 0 1 2 3] [--recipes supcon softmax softmax128]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from simplug.components.encoder import Encoder
from simplug.data.samples import SimilarityGroupSample
from simplug.model.similarity_model import SimilarityModel
from simplug.plugins.heads.blend import BlendHead
from simplug.plugins.heads.empty import EmptyHead
from simplug.plugins.losses.softmax import SoftmaxLoss
from simplug.plugins.losses.supervised_contrastive import SupervisedContrastiveLoss
from simplug.registry.building import build_component
from simplug.training.tuning import EmbeddedTask, EncoderOutputs

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "category_routing")
SHOWN = ("retrieval_precision@1", "retrieval_r_precision", "knn_accuracy@10")
BAR = (0.80, 0.75, 0.80)  # the original framework's best run, rounded up: precision@1 0.799, R-precision 0.735, kNN-10 0.777


@dataclass
class Recipe:
    layers: tuple[int, ...]
    input_weight: float
    assignment_weight: float
    loss: Callable[[int, int], torch.nn.Module]  # (head output size, number of groups) -> loss
    batch_size: int
    lr: float
    epochs: tuple[int, ...]  # scored after these epochs


def normalised_softmax(size: int, groups: int) -> torch.nn.Module:
    return SoftmaxLoss(size, groups, temperature=0.1, normalize=True)


def supervised_contrastive(size: int, groups: int) -> torch.nn.Module:
    return SupervisedContrastiveLoss(temperature=0.1)


RECIPES = {
    "supcon": Recipe((4, 5, 6), 0.4, 0.3, supervised_contrastive, 64, 1e-3, (100,)),
    "softmax": Recipe((4, 5, 6), 0.4, 0.3, normalised_softmax, 64, 1e-3, (100,)),
    "softmax64": Recipe((4, 5, 6), 0.6, 0.2, normalised_softmax, 64, 1e-3, (150, 200)),
    "softmax128": Recipe((4, 5, 6), 0.6, 0.2, normalised_softmax, 128, 2e-3, (100, 150)),
    "softmax_last_layer": Recipe((6,), 0.6, 0.2, normalised_softmax, 64, 1e-3, (200,)),
    # layer 0 (the token embeddings) adds the texts' wording
    "softmax128_056": Recipe((0, 5, 6), 0.6, 0.2, normalised_softmax, 128, 2e-3, (100, 150)),
    "softmax128_0456": Recipe((0, 4, 5, 6), 0.6, 0.2, normalised_softmax, 128, 2e-3, (100, 150)),  # config.toml
}


def splits(seed: int) -> tuple[list[SimilarityGroupSample], list[SimilarityGroupSample]]:
    sys.path.insert(0, EXAMPLE)
    import prepare_data

    train, held_out = prepare_data.split(prepare_data.load_items(prepare_data.corpus_dir()), 0.2, seed)
    labels: dict[str, int] = {}
    return ([SimilarityGroupSample(r["text"], labels.setdefault(r["category"], len(labels))) for r in train],
            [SimilarityGroupSample(r["text"], labels.setdefault(r["category"], len(labels))) for r in held_out])


def train_and_score(recipe: Recipe, encoder: Encoder, outputs: EncoderOutputs, train: list, held_out: list) -> dict[int, dict]:
    task = EmbeddedTask("groups", held_out, train)
    task.use_outputs_table(outputs)
    rows = outputs.rows_of([s.obj for s in train])
    groups = torch.tensor([s.group for s in train])
    torch.manual_seed(0)
    head = BlendHead(encoder.embedding_size, input_weight=recipe.input_weight, assignment_weight=recipe.assignment_weight)
    loss_fn = recipe.loss(head.output_size, int(groups.max()) + 1)
    optimizer = torch.optim.Adam([*head.parameters(), *loss_fn.parameters()], lr=recipe.lr)
    model = SimilarityModel(encoder, head)
    scores = {}
    for epoch in range(1, max(recipe.epochs) + 1):
        head.train()
        for batch in torch.randperm(len(rows)).split(recipe.batch_size):
            loss = loss_fn(head(rows[batch]), groups=groups[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch in recipe.epochs:
            head.eval()
            scores[epoch] = task.score(model)
    return scores


def logistic_regression_accuracy(outputs: EncoderOutputs, train: list, held_out: list) -> float:
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=10, max_iter=2000).fit(outputs.rows_of([s.obj for s in train]).numpy(), [s.group for s in train])
    return float(fit.score(outputs.rows_of([s.obj for s in held_out]).numpy(), [s.group for s in held_out]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    reference: dict[tuple[int, ...], list[float]] = {}
    for layers in sorted({RECIPES[name].layers for name in args.recipes}):
        encoder = build_component("encoders", {"name": "sentence_transformer", "layers": list(layers)}, Encoder)
        base = SimilarityModel(encoder, EmptyHead(encoder.embedding_size))
        for seed in args.splits:
            train, held_out = splits(seed)
            outputs = EncoderOutputs(base, [s.obj for s in train + held_out], batch_size=128)
            reference.setdefault(layers, []).append(logistic_regression_accuracy(outputs, train, held_out))
            for name in (n for n in args.recipes if RECIPES[n].layers == layers):
                started = time.perf_counter()
                for epoch, scores in train_and_score(RECIPES[name], encoder, outputs, train, held_out).items():
                    results.setdefault((name, epoch), []).append(scores)
                print(f"split {seed}, {name}: {time.perf_counter() - started:.0f} s", flush=True)
    print(f"\n{len(args.splits)} splits; mean (lowest split) of " + " / ".join(SHOWN))
    for (name, epoch), runs in results.items():
        cells = [f"{statistics.mean(r[m] for r in runs):.3f} ({min(r[m] for r in runs):.3f})" for m in SHOWN]
        at_bar = sum(all(r[m] >= bar for m, bar in zip(SHOWN, BAR)) for r in runs)
        print(f"  {name:<22} {epoch:>4} epochs  " + " / ".join(cells) + f"  at the bar on {at_bar} of {len(runs)}")
    for layers, accuracies in reference.items():
        print(f"  logistic regression (C 10) on layers {list(layers)}: routes {statistics.mean(accuracies):.3f} right "
              f"(lowest split {min(accuracies):.3f})")


if __name__ == "__main__":
    main()
