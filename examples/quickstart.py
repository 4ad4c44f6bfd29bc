"""A small end-to-end run on generated data: train, compare metrics, save, serve, encode.

The data: 24 groups of points whose group signal lives in a few directions of the input,
buried under larger nuisance noise. A frozen encoder (a fixed random layer) keeps both;
a skip-connection head trained with a triplet loss learns to drop the noise. Queries at
evaluation time are new points of the known groups.

Run: python examples/quickstart.py [--epochs N] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

from simplug import (
    Evaluator,
    GroupSimilarityDataLoader,
    Quaterion,
    SimilarityGroupSample,
    TrainableModel,
)
from simplug.plugins.encoders.torch_module import TorchModuleEncoder


def make_groups(n_groups: int, per_group: int, seed: int) -> list[SimilarityGroupSample]:
    gen = torch.Generator().manual_seed(0)  # the same group centres for every split
    centres = torch.randn(n_groups, 8, generator=gen) * 1.0
    mixing = torch.randn(8, 32, generator=gen)
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for group in range(n_groups):
        signal = centres[group] + 0.35 * torch.randn(per_group, 8, generator=gen)
        noise = 1.5 * torch.randn(per_group, 32, generator=gen)
        points = signal @ mixing / 8**0.5 + noise
        samples.extend(SimilarityGroupSample(obj=p, group=group) for p in points)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None, help="where to save the model (default: a temporary directory)")
    args = parser.parse_args()
    torch.manual_seed(0)

    train = make_groups(24, 150, seed=1)
    held_out = make_groups(24, 10, seed=2)

    frozen = nn.Sequential(nn.Linear(32, 64), nn.Tanh())
    model = TrainableModel.from_config(
        {
            "encoder": TorchModuleEncoder(frozen, input_size=32, trainable=False),
            "head": {"name": "skip_connection", "n_layers": 2},
            "loss": {"name": "triplet", "mining": "all", "margin": 0.5},
            "optimizer": {"name": "adam", "lr": 1e-2},
            "metrics": [{"name": "retrieval_precision", "k": 1}, "retrieval_reciprocal_rank"],
        }
    )
    evaluator = Evaluator(["retrieval_reciprocal_rank", {"name": "retrieval_precision", "k": 1},
                           {"name": "retrieval_precision", "k": 5}])
    before = Quaterion.evaluate(evaluator, held_out, model)

    out_root = args.out or tempfile.mkdtemp(prefix="simplug-quickstart-")
    started = time.perf_counter()
    Quaterion.fit(
        model,
        train_dataloader=GroupSimilarityDataLoader(train, batch_size=128, shuffle=True),
        val_dataloader=GroupSimilarityDataLoader(held_out, batch_size=240),
        max_epochs=args.epochs,
        default_root_dir=out_root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    seconds = time.perf_counter() - started
    after = Quaterion.evaluate(evaluator, held_out, model)

    print(f"\ntrained {args.epochs} epochs in {seconds:.1f} s; held-out metrics (new points, known groups):")
    print(f"{'metric':32} {'untrained':>10} {'trained':>10}")
    for name in before:
        print(f"{name:32} {before[name]:10.3f} {after[name]:10.3f}")

    model_dir = os.path.join(out_root, "model")
    model.save_servable(model_dir)
    print(f"\nsaved servable model to {model_dir}")

    # serve from a fresh process: only the base install, no training code
    probe = (
        "import sys, torch\n"
        "from simplug.serving import SimilarityModel\n"
        f"model = SimilarityModel.load({model_dir!r})\n"
        "emb = model.encode([torch.zeros(32), torch.ones(32)], batch_size=2)\n"
        "print('served embeddings:', emb.shape, 'lightning imported:', 'pytorch_lightning' in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


if __name__ == "__main__":
    main()
