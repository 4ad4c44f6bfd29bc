"""Run a recipe's config.toml with the frozen encoder run once, and print the fine-tuned model
beside the baselines.

This is what ``simplug train CONFIG.toml`` does with a cache of the frozen encoder, written
out with simplug's public pieces so each step is visible (and timed):

1. read the data the config names;
2. encode every distinct object once with the config's (frozen) encoder, in length-sorted
   batches of 128 (short texts sorted by length pad little, and larger batches run faster): the cache fill;
3. score the baselines: the untrained encoder, and the nearest labelled example (no training);
4. train the config's head(s) and loss on the stored embeddings (an identity encoder over
   them), with the config's batches (``m_per_group`` for balanced group batches);
5. score the fine-tuned model on the same held-out protocol, and save a servable model: the
   real text encoder with the trained head(s).

    python examples/run_recipe.py examples/category_routing/config.toml [--epochs N] [--out DIR]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", default=None, help="output directory (default: the config's [output] dir)")
    args = parser.parse_args()

    import pytorch_lightning as pl
    from simplug import TrainableModel
    from simplug.cli.job_config import load_job_config
    from simplug.cli.train_job import loaders
    from simplug.components.encoder import Encoder
    from simplug.data.readers import read_samples
    from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample
    from simplug.evaluation.baselines import (
        baselines,
        evaluate_heldout,
        format_comparison,
    )
    from simplug.model.similarity_model import SimilarityModel
    from simplug.plugins.encoders.torch_module import TorchModuleEncoder
    from simplug.plugins.heads.empty import EmptyHead
    from simplug.registry.building import build_component
    from simplug.training.fit import fit
    from torch import nn

    started = time.perf_counter()
    job = load_job_config(args.config)
    kind, settings = job.data["kind"], dict(job.train)
    epochs = args.epochs if args.epochs is not None else int(settings.get("epochs", 10))
    out = args.out or job.resolve_path(job.output.get("dir", "output"))
    pl.seed_everything(int(settings.get("seed", 0)), verbose=False)
    group_ids: dict = {}
    train = read_samples(job.resolve_path(job.data["train"]), kind, job.data.get("fields"), group_ids)
    held_out = read_samples(job.resolve_path(job.data["validation"]), kind, job.data.get("fields"), group_ids)
    print(f"data: {len(train)} training and {len(held_out)} held-out {kind}")

    # 2. the cache fill: every distinct object through the frozen encoder once
    encoder = build_component("encoders", job.model["encoder"], Encoder)
    if encoder.trainable:
        raise SystemExit("this runner stores the encoder's output, so the encoder must be frozen")
    objects = sorted({o for s in train + held_out for o in _objects(s)})
    fill_started = time.perf_counter()
    vectors = SimilarityModel(encoder, EmptyHead(encoder.embedding_size)).encoder_outputs(objects, batch_size=128)
    fill_seconds = time.perf_counter() - fill_started
    row = {o: vectors[i] for i, o in enumerate(objects)}
    print(f"cache fill: {len(objects)} distinct objects in {fill_seconds:.1f} s")

    def stored(sample):
        if isinstance(sample, SimilarityGroupSample):
            return SimilarityGroupSample(row[sample.obj], sample.group)
        return SimilarityPairSample(row[sample.obj_a], row[sample.obj_b], sample.score, sample.subgroup)

    train_v, held_v = [stored(s) for s in train], [stored(s) for s in held_out]
    config = copy.deepcopy({k: v for k, v in job.model.items() if k != "encoder"})
    config["encoder"] = TorchModuleEncoder(nn.Identity(), embedding_size=encoder.embedding_size)
    trainable = TrainableModel.from_config(config, num_groups=len(group_ids))

    # 3. baselines, 4. training, 5. the fine-tuned model
    rows = baselines(trainable, train_v, held_v)
    train_loader, _ = loaders(kind, train_v, held_v, settings)
    fit_started = time.perf_counter()
    fit(trainable, train_dataloader=train_loader, max_epochs=epochs, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)
    fit_seconds = time.perf_counter() - fit_started
    rows = {"fine-tuned": evaluate_heldout(trainable, train_v, held_v), **rows}

    heads = trainable.model.head if trainable.model.side_heads is None else dict(trainable.model.side_heads.items())
    servable = SimilarityModel(encoder, heads)
    model_dir = servable.save(os.path.join(out, "model"), training=trainable.training_info())
    total = time.perf_counter() - started
    print(f"\nheld-out metrics after {epochs} epochs:")
    print(format_comparison(rows))
    print(f"\nseconds: cache fill {fill_seconds:.1f}, training {fit_seconds:.1f}, total {total:.1f} "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"model: {model_dir}")
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump({"metrics": rows, "epochs": epochs, "seconds": {"cache_fill": fill_seconds, "train": fit_seconds,
                   "total": total}, "load_average": os.getloadavg()[0]}, fh, indent=2)


def _objects(sample) -> tuple:
    return (sample.obj,) if hasattr(sample, "obj") else (sample.obj_a, sample.obj_b)


if __name__ == "__main__":
    main()
