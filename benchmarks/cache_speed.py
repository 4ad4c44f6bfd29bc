"""How fast is a cached epoch? Side by side, on the same data, head, loss, optimizer, batch size:

1. simplug with every encoder cached (the fast path: index tensors into the cache),
2. a hand-written PyTorch loop over the same in-memory embedding tensor (the floor),
3. a bare LightningModule with the same head, loss and optimizer, fed the same batches by a
   plain Python iterable (the floor of any Lightning loop: what Lightning's per-step machinery
   costs by itself, which simplug's cached path cannot go below while it trains through Lightning),
4. simplug without a cache (the frozen encoder runs every step),

each the median seconds per epoch, and the ratios. Then the peak memory the cache fill added
against the cache's payload (rows x size x bytes).

Run: python benchmarks/cache_speed.py [--samples 32768] [--epochs 7] [--batch-sizes 64,1024]
Targets: cached <= 1.25x the hand-written loop; cache peak memory within 5% of its payload.
The "cached/bare Lightning" column is simplug's own cost over Lightning's (1.00x: none).
Timings on a shared machine are noisy: compare the ratios, which are measured in one run.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings

import torch
from torch import nn

import pytorch_lightning as pl

from simplug import GroupSimilarityDataLoader, Quaterion, SimilarityGroupSample, TrainableModel
from simplug.training.cache.config import CacheConfig
from simplug.training.lightning_speed import NoProfiler
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.plugins.losses.triplet import TripletLoss

LR = 1e-3


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    try:  # Linux: writing 5 resets VmHWM (the peak resident set) to the current RSS
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def make_data(samples: int, dim_in: int, groups: int) -> list[SimilarityGroupSample]:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(groups, dim_in, generator=gen)
    labels = torch.randint(0, groups, (samples,), generator=gen)
    points = centres[labels] + torch.randn(samples, dim_in, generator=gen)
    return [SimilarityGroupSample(obj=p, group=int(g)) for p, g in zip(points, labels)]


def make_encoder(dim_in: int, dim: int) -> TorchModuleEncoder:
    torch.manual_seed(0)
    frozen = nn.Sequential(nn.Linear(dim_in, 1024), nn.GELU(), nn.Linear(1024, dim))
    return TorchModuleEncoder(frozen, input_size=dim_in, trainable=False)


def make_head(dim: int) -> SkipConnectionHead:
    torch.manual_seed(1)
    return SkipConnectionHead(dim, n_layers=1)


class BenchModel(TrainableModel):
    def __init__(self, encoder: TorchModuleEncoder, cache: CacheConfig | None):
        self.parts = [encoder, cache]
        super().__init__()

    def configure_encoders(self):
        return self.parts[0]

    def configure_head(self, input_embedding_size):
        return make_head(input_embedding_size)

    def configure_loss(self):
        return TripletLoss(mining="hard")

    def configure_caches(self):
        return self.parts[1]

    def configure_optimizers(self):
        return torch.optim.Adam(self.trainable_parameters(), lr=LR)


class HandWrittenFloor:
    """The floor: a plain PyTorch loop over the same embedding tensor, one epoch at a time."""

    def __init__(self, embeddings: torch.Tensor, groups: torch.Tensor, batch_size: int):
        self.embeddings, self.groups, self.batch_size = embeddings, groups, batch_size
        self.head, self.loss_fn = make_head(embeddings.shape[1]), TripletLoss(mining="hard")
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=LR)
        self.seconds: list[float] = []

    def epoch(self) -> None:
        start = time.perf_counter()
        for idx in torch.randperm(len(self.embeddings)).split(self.batch_size):
            loss = self.loss_fn(self.head(self.embeddings[idx]), self.groups[idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.seconds.append(time.perf_counter() - start)


class EpochTimer(pl.Callback):
    """Times each simplug epoch and, with a floor, runs one hand-written epoch after it (outside
    the timing), so both see the same load on a shared machine and their ratio is paired epoch
    by epoch. One callback, not two: Lightning calls every callback on every hook of every step,
    and the benchmark should not add to what it measures."""

    def __init__(self, floor: HandWrittenFloor | None = None) -> None:
        self.seconds: list[float] = []
        self.floor = floor

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._start)
        if self.floor is not None:
            self.floor.epoch()


class BareLightningModule(pl.LightningModule):
    def __init__(self, dim: int):
        super().__init__()
        self.head, self.loss_fn = make_head(dim), TripletLoss(mining="hard")

    def training_step(self, batch, batch_idx):
        embeddings, groups = batch
        return self.loss_fn(self.head(embeddings), groups)

    def configure_optimizers(self):
        return torch.optim.Adam(self.head.parameters(), lr=LR)


class TensorBatches:
    """``(embeddings[idx], groups[idx])`` for a shuffled order split into batches: no per-sample
    Python, no DataLoader machinery."""

    def __init__(self, embeddings: torch.Tensor, groups: torch.Tensor, batch_size: int):
        self.embeddings, self.groups, self.batch_size = embeddings, groups, batch_size

    def __len__(self) -> int:
        return -(-len(self.embeddings) // self.batch_size)

    def __iter__(self):
        for idx in torch.randperm(len(self.embeddings)).split(self.batch_size):
            yield self.embeddings[idx], self.groups[idx]


def bare_lightning_epochs(embeddings, groups, batch_size, epochs, floor: HandWrittenFloor):
    timer = EpochTimer(floor)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, callbacks=[timer], accelerator="cpu", profiler=NoProfiler())
    trainer.fit(BareLightningModule(embeddings.shape[1]), train_dataloaders=TensorBatches(embeddings, groups, batch_size))
    return timer.seconds


def simplug_epochs(data, encoder, batch_size, epochs, cache: CacheConfig | None, floor: HandWrittenFloor | None = None):
    model = BenchModel(encoder, cache)
    timer = EpochTimer(floor)
    loader = GroupSimilarityDataLoader(data, batch_size=batch_size, shuffle=True)
    Quaterion.fit(model, train_dataloader=loader, max_epochs=epochs, logger=False, enable_progress_bar=False,
                  enable_model_summary=False, enable_checkpointing=False, callbacks=[timer], accelerator="cpu")
    return timer.seconds, model


def fill_memory(args) -> dict:
    """In a fresh process (so freed memory of earlier runs is not reused): the peak resident
    memory the cache fill adds, against the cache's payload."""
    import ctypes
    import json

    data = make_data(args.samples, args.dim_in, args.groups)
    encoder = make_encoder(args.dim_in, args.dim)
    model = BenchModel(encoder, CacheConfig(args.cache_type))
    model.setup_cache(GroupSimilarityDataLoader(data, batch_size=64))
    # one-time costs (torch kernels, the fill's imports and loader machinery) are not the cache's:
    # a fill of 64 objects pays them before the measured one
    warm = BenchModel(encoder, CacheConfig(args.cache_type))
    warm.setup_cache(GroupSimilarityDataLoader(data[:64], batch_size=64))
    warm.fill_caches()
    warm.cache_state.close()
    del warm
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back before measuring
    except OSError:
        pass
    if not reset_peak_rss():
        return {}
    before = proc_status_kib("VmRSS")
    model.fill_caches()
    growth = (proc_status_kib("VmHWM") - before) * 1024
    payload = model.cache_state.backends["default"].payload_bytes
    print(json.dumps({"payload": payload, "growth": growth}))
    return {"payload": payload, "growth": growth}


def memory_line(args) -> str:
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--memory-child", "--samples", str(args.samples), "--dim-in", str(args.dim_in),
           "--dim", str(args.dim), "--groups", str(args.groups), "--cache-type", args.cache_type]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return f"cache memory: not measurable here ({proc.stderr.strip()[-200:]})"
    payload, growth = result["payload"], result["growth"]
    where = "resident memory" if args.cache_type != "disk" else "resident memory (disk: page cache of the mapped file)"
    return (f"cache payload {payload / 2**20:.1f} MiB; peak {where} added by the fill {growth / 2**20:.1f} MiB "
            f"= {growth / payload:.3f}x the payload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=32768)
    parser.add_argument("--dim-in", type=int, default=256, help="size of the raw objects")
    parser.add_argument("--dim", type=int, default=384, help="embedding size of the frozen encoder")
    parser.add_argument("--groups", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=7, help="epochs per cached and hand-written run")
    parser.add_argument("--uncached-epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="64,1024")
    parser.add_argument("--cache-type", default="memory", help="memory, device, disk or any registered backend")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        fill_memory(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    data = make_data(args.samples, args.dim_in, args.groups)
    encoder = make_encoder(args.dim_in, args.dim)
    with torch.inference_mode():  # the floor's tensor: the same rows the cache holds
        embeddings = encoder(torch.stack([s.obj for s in data])).clone()
    groups = torch.tensor([s.group for s in data])
    print(f"{args.samples} samples, raw size {args.dim_in}, frozen MLP encoder -> {args.dim}, skip-connection head, "
          f"triplet loss (hard), Adam; torch threads {torch.get_num_threads()}; cache backend {args.cache_type}")
    header = (f"{'batch':>6} {'steps':>6} {'cached s/ep':>12} {'hand s/ep':>10} {'uncached s/ep':>14} {'cached/hand':>12} "
              f"{'paired':>8} {'bare Lightning/hand':>20} {'cached/bare Lightning':>22} {'uncached/cached':>16}")
    print(header)
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        floor = HandWrittenFloor(embeddings, groups, batch_size)
        floor.epoch()  # warm-up
        floor.seconds.clear()
        cached, _ = simplug_epochs(data, encoder, batch_size, args.epochs, CacheConfig(args.cache_type), floor)
        hand = list(floor.seconds)
        floor.seconds.clear()
        bare = bare_lightning_epochs(embeddings, groups, batch_size, args.epochs, floor)
        bare_hand = list(floor.seconds)
        uncached, _ = simplug_epochs(data, encoder, batch_size, args.uncached_epochs, None)
        paired = statistics.median(c / h for c, h in zip(cached, hand))
        bare_paired = statistics.median(b / h for b, h in zip(bare, bare_hand))
        c, h, u = statistics.median(cached), statistics.median(hand), statistics.median(uncached)
        steps = -(-args.samples // batch_size)
        print(f"{batch_size:>6} {steps:>6} {c:>12.4f} {h:>10.4f} {u:>14.4f} {c / h:>11.2f}x {paired:>7.2f}x "
              f"{bare_paired:>19.2f}x {paired / bare_paired:>21.2f}x {u / c:>15.1f}x", flush=True)
    print(memory_line(args))


if __name__ == "__main__":
    sys.exit(main())
