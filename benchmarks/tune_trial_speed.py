"""A ``simplug tune`` trial against the same training through ``simplug train`` with a filled cache.

Both run the job's own settings (``[tune.space]`` keys keep their configured values) in one
process, alternately, so machine load hits both alike; the wall and CPU seconds of the training
step of each are printed with their ratio. The job needs ``[train] cache_dir`` (the cache of
``simplug train`` and the stored encoder outputs of ``simplug tune`` are then filled once, by
the first round, and reused after).

    python benchmarks/tune_trial_speed.py examples/category_routing/config.toml --rounds 3
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()

    from simplug.cli.train_job import build_model, read_data, score_baselines, start_run, train_model
    from simplug.cli.tune_job import TuningJob

    out = tempfile.mkdtemp(prefix="simplug-tune-speed-")
    quiet = lambda line: None  # noqa: E731
    job = TuningJob(args.config, out=os.path.join(out, "tune"), echo=quiet)
    if not job.run.settings.get("cache_dir"):
        raise SystemExit("give the job a [train] cache_dir, so both sides train from a filled cache")
    job.prepare()
    # the job's own settings: what simplug train trains
    sections = {"model": copy.deepcopy(job.job.model), "train": {**job.job.train, "epochs": args.epochs}}
    warm = start_run(args.config, os.path.join(out, "warm-up"), 1, quiet)  # builds simplug train's cache file
    read_data(warm)
    build_model(warm)
    score_baselines(warm)
    train_model(warm)
    rows = []
    for round_ in range(args.rounds):
        run = start_run(args.config, os.path.join(out, f"train{round_}"), args.epochs, quiet)
        read_data(run)
        build_model(run)
        score_baselines(run)
        wall, cpu = time.perf_counter(), time.process_time()
        train_model(run)
        train = (time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        job.train_one(sections)
        trial = (time.perf_counter() - wall, time.process_time() - cpu)
        rows.append((train, trial))
        load = os.getloadavg()[0]
        print(f"round {round_}: simplug train {train[0]:.2f} s wall / {train[1]:.2f} s CPU; tune trial "
              f"{trial[0]:.2f} s / {trial[1]:.2f} s; ratio wall {trial[0] / train[0]:.2f}, CPU {trial[1] / train[1]:.2f} "
              f"(load {load:.1f})", flush=True)
    walls = sorted(t[0] / s[0] for s, t in rows)
    cpus = sorted(t[1] / s[1] for s, t in rows)
    print(f"median ratio trial / train: wall {walls[len(walls) // 2]:.2f}, CPU {cpus[len(cpus) // 2]:.2f}")


if __name__ == "__main__":
    main()
