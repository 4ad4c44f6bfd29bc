"""Cached training under Lightning's DDP strategy: 2 CPU processes (gloo) on this machine."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from torch import nn
    sys.path.insert(0, {tests!r})
    from data import group_points
    from simplug import GroupSimilarityDataLoader, Quaterion, TrainableModel
    from simplug.training.cache.config import CacheConfig
    from simplug.plugins.encoders.torch_module import TorchModuleEncoder
    from simplug.plugins.heads.skip_connection import SkipConnectionHead
    from simplug.plugins.losses.triplet import TripletLoss

    class Counting(TorchModuleEncoder):
        calls = 0
        def forward(self, batch):
            type(self).calls += 1
            return super().forward(batch)

    class Model(TrainableModel):
        def configure_encoders(self):
            torch.manual_seed(0)
            return {{"a": Counting(nn.Linear(12, 8), input_size=12), "b": Counting(nn.Linear(12, 4), input_size=12)}}
        def configure_head(self, size):
            return SkipConnectionHead(size)
        def configure_loss(self):
            return TripletLoss()
        def configure_caches(self):
            return CacheConfig(mapping={{"a": "memory", "b": "disk"}}, batch_size=8, save_dir={save_dir!r})

    torch.manual_seed(0)
    data = group_points(per_group=8)  # 48 objects: 6 fill batches per encoder, shared by 2 processes
    model = Model()
    trainer = Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(data, batch_size=8, shuffle=True),
                            max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    objects = torch.stack([s.obj for s in data])
    state = model.cache_state
    with torch.no_grad():
        exact = {{k: bool(torch.allclose(state.backends[k].rows(torch.arange(48)), model.model.encoders[k].module(objects), atol=1e-6))
                 for k in ("a", "b")}}
    result = {{
        "rank": trainer.global_rank, "world": trainer.world_size, "exact": exact, "fill_calls": Counting.calls,
        "steps": trainer.global_step, "head": [float(p.sum()) for p in model.model.head.parameters()],
        "backends": {{k: type(v).__name__ for k, v in state.backends.items()}},
    }}
    with open(os.path.join({out!r}, f"rank{{trainer.global_rank}}.json"), "w") as fh:
        json.dump(result, fh)
    """
)


def test_cached_training_under_ddp_on_two_cpu_processes(tmp_path):
    tests = str(__import__("pathlib").Path(__file__).parent)
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(tests=tests, save_dir=str(tmp_path / "cache"), out=str(tmp_path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, result in enumerate(results):
        assert result["rank"] == rank and result["world"] == 2
        assert result["exact"] == {"a": True, "b": True}  # each process holds every row, correct
        assert result["backends"] == {"a": "MemoryCache", "b": "DiskCache"}
        assert result["fill_calls"] == 6  # its half of 6 batches for each of the 2 encoders
        assert result["steps"] == 2 * 3  # 48 samples split over 2 processes in batches of 8
    assert results[0]["head"] == results[1]["head"]  # gradients were synchronised
    # the files of the two caches and their entries' lock files, no temporary file
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        ".a.rows.lock", ".b.rows.lock", "a.json", "a.rows", "b.json", "b.rows"]
