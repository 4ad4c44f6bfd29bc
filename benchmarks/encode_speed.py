"""Text encoding speed: simplug against sentence-transformers' own ``encode``.

On the same texts (the chatterbot corpus utterances) and the same batch size, in one run:
(1) sentence-transformers' ``SentenceTransformer.encode`` (the baseline),
(2) ``SimilarityModel.encode`` of a model with the ``sentence_transformer`` encoder (what
    ``simplug encode`` and ``simplug serve`` run),
(3) simplug's cache fill of the frozen encoder (what ``simplug train`` runs before epoch 1).
Each is timed ``--repeats`` times, interleaved, and the medians and ratios to (1) are printed.
Target: ratios at most 1.10.

Run: python benchmarks/encode_speed.py [--batch-size 32] [--repeats 5] [--limit N]
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import time

import torch


def corpus_texts() -> list[str]:
    import chatterbot_corpus
    import yaml

    texts: set[str] = set()
    for path in sorted(glob.glob(os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", "english", "*.yml"))):
        with open(path, encoding="utf-8") as fh:
            for conversation in yaml.safe_load(fh).get("conversations", []):
                texts.update(" ".join(t.split()) for t in conversation if isinstance(t, str) and t.strip())
    return sorted(texts)


def cache_fill_timer(encoder, texts, batch_size):
    """A callable running simplug's cache fill of ``encoder`` over ``texts`` (the pass a
    training run makes before its first epoch), as ``simplug train`` sets it up."""
    from simplug import GroupSimilarityDataLoader, SimilarityGroupSample, TrainableModel

    samples = [SimilarityGroupSample(obj=text, group=i % 7) for i, text in enumerate(texts)]

    def run():
        model = TrainableModel.from_config({
            "encoder": encoder,
            "loss": {"name": "triplet"},
            "cache": {"cache_type": "auto", "batch_size": batch_size},
        })
        loader = GroupSimilarityDataLoader(samples, batch_size=64)
        model.setup_dataloader(loader)
        model.setup_cache(loader)
        model.fill_caches()
        return model.cache_state

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N texts")
    args = parser.parse_args()

    from simplug.plugins.encoders.sentence_transformer import SentenceTransformerEncoder
    from simplug.plugins.heads.empty import EmptyHead
    from simplug.model.similarity_model import SimilarityModel

    texts = corpus_texts()
    if args.limit:
        texts = texts[: args.limit]
    encoder = SentenceTransformerEncoder()
    model = SimilarityModel(encoder, EmptyHead(encoder.embedding_size))
    st_model = encoder.model
    runs = {
        "sentence-transformers encode": lambda: st_model.encode(texts, batch_size=args.batch_size, convert_to_tensor=True),
        "simplug SimilarityModel.encode": lambda: model.encode(texts, batch_size=args.batch_size, to_numpy=False),
    }
    runs["simplug cache fill"] = cache_fill_timer(encoder, texts, args.batch_size)
    print(f"{len(texts)} texts, batch size {args.batch_size}, torch threads {torch.get_num_threads()}, {args.repeats} repeats")
    reference = runs["simplug SimilarityModel.encode"]()
    baseline = runs["sentence-transformers encode"]().cpu()
    print(f"max abs difference simplug vs sentence-transformers: {(reference - baseline).abs().max().item():.2e}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["sentence-transformers encode"])
    print(f"{'':34s} {'median s':>9s} {'texts/s':>8s} {'ratio':>6s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:34s} {median:9.3f} {len(texts) / median:8.0f} {median / base:6.2f}")


if __name__ == "__main__":
    main()
