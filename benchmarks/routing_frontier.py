"""What can a head on the frozen encoder reach on the category-routing job, and how well does the
tuner's validation split predict it? An analysis run by hand, not a timing.

Trains ``--settings`` random settings of the ``blend`` head (weights, assignment temperature,
loss temperature, learning rate) with supervised contrastive loss on the training file minus the
validation split that ``simplug tune`` carves (same share, same seed), and scores every
``--every`` epochs on both that split and the held-out file, from one pass of the encoder, as
``simplug tune`` scores its trials (the metric names of ``simplug train``). Then prints:

1. with hindsight (choosing on the held-out split itself): the best R-precision among models
   that keep recall@5 and recall@10 at the untrained encoder's, and among models with recall@10
   of at least 0.95 and 0.96;
2. the correlation, across all scored models, of each metric on the validation split with the
   same metric on the held-out split: how much a tuner can learn about it from the split.

Run after ``python examples/category_routing/prepare_data.py [--seed N --out DIR]``:

    python benchmarks/routing_frontier.py [--data examples/category_routing/data] [--settings 14]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics

import torch
from simplug.components.encoder import Encoder
from simplug.data.samples import SimilarityGroupSample
from simplug.model.similarity_model import SimilarityModel
from simplug.plugins.heads.blend import BlendHead
from simplug.plugins.heads.empty import EmptyHead
from simplug.plugins.losses.supervised_contrastive import SupervisedContrastiveLoss
from simplug.registry.building import build_component
from simplug.training.tuning import EmbeddedTask, EncoderOutputs, carve_validation

HEADLINE = ("retrieval_precision@1", "retrieval_r_precision", "knn_accuracy@10", "recall@5", "recall@10")


def read_groups(path: str, labels: dict[str, int]) -> list[SimilarityGroupSample]:
    """The texts of a JSONL split, their categories numbered by ``labels`` (one table for both splits)."""
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [SimilarityGroupSample(obj=row["text"], group=labels.setdefault(row["category"], len(labels))) for row in rows]


def random_setting(rng: random.Random) -> dict[str, float]:
    """A point of the example's [tune.space], widened to input weights from 0."""
    while True:
        setting = {
            "input_weight": rng.uniform(0.0, 0.5),
            "assignment_weight": rng.uniform(0.1, 0.5),
            "assignment_temperature": math.exp(rng.uniform(math.log(0.3), 0.0)),
            "temperature": math.exp(rng.uniform(math.log(0.05), math.log(0.2))),
            "lr": math.exp(rng.uniform(math.log(5e-4), math.log(3e-3))),
        }
        if setting["input_weight"] + setting["assignment_weight"] <= 0.9:
            return setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("examples", "category_routing", "data"))
    parser.add_argument("--settings", type=int, default=14)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.2, help="validation share, as [train] validation_share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write every scored model as a JSON line here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    labels: dict[str, int] = {}
    train = read_groups(os.path.join(args.data, "train.jsonl"), labels)
    held_out = read_groups(os.path.join(args.data, "validation.jsonl"), labels)
    fit_samples, validation = carve_validation(train, "groups", args.share, args.seed)
    encoder = build_component("encoders", {"name": "sentence_transformer"}, Encoder)
    base = SimilarityModel(encoder, EmptyHead(encoder.embedding_size))
    # the encoder runs once; each score re-applies a head to these rows (as simplug tune scores trials)
    outputs = EncoderOutputs(base, [s.obj for s in train + held_out], batch_size=128)
    on_validation = EmbeddedTask("groups", validation, fit_samples)
    on_held_out = EmbeddedTask("groups", held_out, train)
    for task in (on_validation, on_held_out):
        task.use_outputs_table(outputs)
    untrained = {"validation": on_validation.score(base, heads=False), "held_out": on_held_out.score(base, heads=False)}
    print("untrained, held-out:", ", ".join(f"{m} {untrained['held_out'][m]:.3f}" for m in HEADLINE))

    fit_rows = outputs.rows_of([s.obj for s in fit_samples])
    fit_groups = torch.tensor([s.group for s in fit_samples])
    rng = random.Random(args.seed + 1)
    scored = []
    for number in range(args.settings):
        setting = random_setting(rng)
        torch.manual_seed(number)
        head = BlendHead(encoder.embedding_size, input_weight=setting["input_weight"],
                         assignment_weight=setting["assignment_weight"],
                         assignment_temperature=setting["assignment_temperature"])
        loss_fn = SupervisedContrastiveLoss(temperature=setting["temperature"])
        optimizer = torch.optim.Adam(head.parameters(), lr=setting["lr"])
        model = SimilarityModel(encoder, head)
        for epoch in range(1, args.epochs + 1):
            head.train()
            for batch in torch.randperm(len(fit_rows)).split(64):
                loss = loss_fn(head(fit_rows[batch]), groups=fit_groups[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if epoch % args.every == 0:
                scored.append({"setting": setting, "epoch": epoch, "validation": on_validation.score(model),
                               "held_out": on_held_out.score(model)})
        print(f"setting {number + 1}/{args.settings} done", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            for row in [{"setting": "untrained", "epoch": 0, **untrained}] + scored:
                fh.write(json.dumps(row) + "\n")

    base_held = untrained["held_out"]
    keep_recall = [r for r in scored if r["held_out"]["recall@5"] >= base_held["recall@5"]
                   and r["held_out"]["recall@10"] >= base_held["recall@10"]]
    print(f"\n{len(scored)} models, chosen with hindsight on the held-out split:")

    def best_r(rows_: list[dict]) -> str:
        return f"{max(r['held_out']['retrieval_r_precision'] for r in rows_):.3f}" if rows_ else "none"

    print(f"  recall@5 and recall@10 >= untrained: {len(keep_recall)} models, best R-precision {best_r(keep_recall)}")
    for floor in (0.95, 0.96):
        print(f"  recall@10 >= {floor}: best R-precision {best_r([r for r in scored if r['held_out']['recall@10'] >= floor])}")
    print(f"  any: best R-precision {best_r(scored)}")
    print("\ncorrelation across models, validation split vs held-out split:")
    for metric in HEADLINE:
        xs = [r["validation"][metric] for r in scored]
        ys = [r["held_out"][metric] for r in scored]
        print(f"  {metric}: {statistics.correlation(xs, ys):.3f}")


if __name__ == "__main__":
    main()
