"""Attacks on the persisted embedding cache: concurrent runs sharing a cache_dir, kills while a
run holds an entry, and a rows file replaced behind the cache's back.

The promise under test (DESIGN.md, cache): writes are locked and checksummed from the bytes
written, so concurrent runs never leave a cache that passes its checks with the wrong rows.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = str(Path(__file__).parent)

FILL = '''
import json, os, sys, time
sys.path.insert(0, {tests!r})
import torch
from torch import nn
from data import group_points
from simplug import GroupSimilarityDataLoader
from simplug.training.cache.config import CacheConfig
from simplug.training.cache.fill import CacheState
from simplug.plugins.encoders.torch_module import TorchModuleEncoder


def fill(save_dir, seed, backend, hook=None):
    """One run's cache fill (what simplug train does before its first epoch), without Lightning."""
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Linear(12, 16), input_size=12)
    data = group_points(per_group=8, seed=seed)  # 48 objects, the same size for every seed
    state = CacheState(CacheConfig(backend, save_dir=save_dir, batch_size=16), {{"default": backend}})
    state.add_source("train", GroupSimilarityDataLoader(data, batch_size=16))
    state.fill({{"default": encoder}}, torch.device("cpu"), progress=False)
    with torch.no_grad():
        rows = state.backends["default"].rows(torch.arange(len(data)))
        exact = bool(torch.allclose(rows, encoder(torch.stack([s.obj for s in data])), atol=1e-6))
    outcome = state.outcomes["default"]
    state.close()
    return exact, outcome
'''

CHILD = FILL + '''
save_dir, seed, backend, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ready, go, pause = sys.argv[5], sys.argv[6], sys.argv[7]
if pause != "-":
    # stop right after writing this run's rows file, before it is checksummed and published
    import simplug.training.cache.fill as fill_module
    real_hash = fill_module.sha256_file

    def paused_hash(path):
        with open(pause + ".at.part", "w") as fh:  # renamed into place: the test never reads half of it
            fh.write(path)
        os.rename(pause + ".at.part", pause + ".at")
        while not os.path.exists(pause + ".go"):
            time.sleep(0.02)
        return real_hash(path)

    fill_module.sha256_file = paused_hash
open(ready, "w").close()
while not os.path.exists(go):  # both runs start their fills together
    time.sleep(0.01)
results = [fill(save_dir, seed, backend) for _ in range(2)]
json.dump(results, open(out, "w"))
'''


def spawn(tmp_path: Path, name: str, seed: int, backend: str, go: Path, pause: str = "-") -> tuple[subprocess.Popen, Path, Path]:
    ready, out = tmp_path / f"{name}.ready", tmp_path / f"{name}.json"
    script = CHILD.format(tests=TESTS)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "cache"), str(seed), backend, str(out), str(ready), str(go), pause],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return proc, ready, out


def wait_for(path: Path, *procs: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240  # a bound on a hung run only; no outcome depends on it
    while not path.exists():
        for proc in procs:
            if proc.poll() is not None and proc.returncode != 0:
                raise AssertionError(proc.stderr.read()[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.02)


def finish(proc: subprocess.Popen) -> None:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]


def in_process_fill(save_dir, seed, backend):
    namespace: dict = {}
    exec(FILL.format(tests=TESTS), namespace)
    return namespace["fill"](str(save_dir), seed, backend)


def assert_cache_tells_the_truth(cache_dir: Path, backend: str) -> None:
    """Whatever the interleaving, the cache left behind never passes its checks with another data
    set's rows: a run with either data set reuses correct rows or rebuilds."""
    for seed in (0, 1):
        exact, outcome = in_process_fill(cache_dir, seed, backend)
        assert exact, outcome
    leftovers = sorted(p.name for p in cache_dir.iterdir() if ".tmp-" in p.name)
    assert leftovers == []


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_two_runs_with_different_data_sharing_a_cache_dir(tmp_path, backend):
    go = tmp_path / "go"
    runs = [spawn(tmp_path, name, seed, backend, go) for name, seed in (("a", 0), ("b", 1))]
    for proc, ready, _ in runs:
        wait_for(ready, proc)
    go.touch()
    for proc, _, out in runs:
        finish(proc)
        results = json.loads(out.read_text())
        assert all(exact for exact, _ in results), results  # each run trained on its own rows
    assert_cache_tells_the_truth(tmp_path / "cache", backend)


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_a_run_holds_the_entry_from_check_to_publication(tmp_path, backend):
    """Paused after writing its rows, run A still holds the entry's lock (so run B cannot
    interleave), writes into a file of its own (not a shared .tmp), and both runs end right."""
    from simplug.training.cache.files import cache_lock, cache_paths

    go = tmp_path / "go"
    pause = str(tmp_path / "pause")
    proc_a, ready_a, out_a = spawn(tmp_path, "a", 0, backend, go, pause=pause)
    wait_for(ready_a, proc_a)
    go.touch()
    wait_for(Path(pause + ".at"), proc_a)
    rows_path, _ = cache_paths(str(tmp_path / "cache"), "default")
    private = Path(pause + ".at").read_text()
    assert private != rows_path + ".tmp" and str(proc_a.pid) in os.path.basename(private)
    from filelock import Timeout

    with pytest.raises(Timeout):
        cache_lock(rows_path).acquire(timeout=0)
    proc_b, ready_b, out_b = spawn(tmp_path, "b", 1, backend, go)
    wait_for(ready_b, proc_b)
    Path(pause + ".go").touch()
    for proc, out in ((proc_a, out_a), (proc_b, out_b)):
        finish(proc)
        assert all(exact for exact, _ in json.loads(out.read_text()))
    assert_cache_tells_the_truth(tmp_path / "cache", backend)


def test_a_run_killed_while_holding_the_entry_blocks_nobody_and_leaves_nothing_used(tmp_path):
    go = tmp_path / "go"
    pause = str(tmp_path / "pause")
    proc_a, ready_a, _ = spawn(tmp_path, "a", 0, "disk", go, pause=pause)
    wait_for(ready_a, proc_a)
    go.touch()
    wait_for(Path(pause + ".at"), proc_a)
    os.kill(proc_a.pid, signal.SIGKILL)  # the operating system releases its lock
    proc_a.communicate()
    cache_dir = tmp_path / "cache"
    assert any(".tmp-" in p.name for p in cache_dir.iterdir())  # its private file is left behind
    exact, outcome = in_process_fill(cache_dir, 0, "disk")
    assert exact and outcome.startswith("built")  # not reused: the killed run published nothing
    assert not any(".tmp-" in p.name for p in cache_dir.iterdir())  # and its leftover is gone


def test_rows_replaced_after_publication_are_detected_not_used(tmp_path, monkeypatch):
    """Another writer swaps the rows file right after this run publishes it (same size, other
    bytes): the checksum was taken from the bytes this run wrote, so the next run rebuilds
    instead of reusing the wrong rows."""
    import simplug.training.cache.fill as fill_module

    real_replace = os.replace

    def replace_then_clobber(src, dst):
        real_replace(src, dst)
        if str(dst).endswith(".rows"):
            size = os.path.getsize(dst)
            with open(dst, "wb") as fh:
                fh.write(np.random.default_rng(0).standard_normal(size // 4).astype(np.float32).tobytes())

    monkeypatch.setattr(fill_module.os, "replace", replace_then_clobber)
    in_process_fill(tmp_path, 0, "memory")
    monkeypatch.setattr(fill_module.os, "replace", real_replace)
    with pytest.warns(UserWarning, match="corrupt"):
        exact, outcome = in_process_fill(tmp_path, 0, "memory")
    assert exact and outcome.startswith("rebuilt")


def test_the_recorded_checksum_is_that_of_the_rows_written(tmp_path):
    from simplug.files import sha256_file

    exact, _ = in_process_fill(tmp_path, 0, "memory")
    assert exact
    meta = json.loads((tmp_path / "default.json").read_text())
    rows = np.fromfile(tmp_path / "default.rows", dtype=np.float32).reshape(48, 16)
    torch.manual_seed(0)
    encoder = torch.nn.Linear(12, 16)  # the child's encoder, built the same way
    from data import group_points

    with torch.no_grad():
        expected = encoder(torch.stack([s.obj for s in group_points(per_group=8, seed=0)])).numpy()
    assert np.allclose(rows, expected, atol=1e-6)
    import hashlib

    assert meta["sha256"] == hashlib.sha256(rows.tobytes()).hexdigest() == sha256_file(tmp_path / "default.rows")


def test_the_one_hasher_and_writer_agree_with_hashlib(tmp_path):
    import hashlib

    from simplug.files import atomic_write, sha256_file, write_json_atomic

    payload = os.urandom(3 * (1 << 20) + 17)  # several chunks and a remainder
    with atomic_write(tmp_path / "blob") as writer:
        writer.write(payload[:1000])
        writer.write(memoryview(payload)[1000:])
    assert writer.sha256 == hashlib.sha256(payload).hexdigest() == sha256_file(tmp_path / "blob")
    assert writer.size == len(payload)
    digest = write_json_atomic(tmp_path / "meta.json", {"b": 1, "a": [1, 2]})
    assert digest == hashlib.sha256((tmp_path / "meta.json").read_bytes()).hexdigest()
    assert sorted(os.listdir(tmp_path)) == ["blob", "meta.json"]  # no temporary file left


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path):
    from simplug.files import atomic_write

    target = tmp_path / "meta.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as writer:
            writer.write(b"half")
            raise RuntimeError("killed midway")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["meta.json"]
