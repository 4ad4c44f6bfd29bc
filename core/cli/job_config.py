"""The job file of ``simplug train``: sections, keys and paths relative to the file."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from simplug.errors import ConfigError

SECTIONS = {
    "data": {"kind", "train", "validation", "fields"},
    "model": None,  # passed to TrainableModel.from_config, which checks its own keys
    "train": {"epochs", "batch_size", "seed", "m_per_group", "group_sampling", "cache", "cache_dir", "num_workers",
              "validate", "early_stopping_patience", "accelerator",
              "select_best", "validation_share"},
    "evaluate": {"distance", "ks", "candidates", "batch_size", "headline"},
    "output": {"dir"},
    # simplug tune: the search space, the objective and constraints, the study (see core/training/tuning.py)
    "tune": {"space", "objective", "constraints", "front", "trials", "timeout", "storage", "study_name", "dir", "seed",
             "prune", "one_thread", "patience"},
}
HEADLINE = {"groups": "r_precision", "pairs": "precision@1"}


@dataclass
class JobConfig:
    path: str
    data: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)

    def resolve_path(self, value: str) -> str:
        return value if os.path.isabs(value) else os.path.join(os.path.dirname(os.path.abspath(self.path)), value)


def load_job_config(path: str) -> JobConfig:
    import tomllib

    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save the config as UTF-8") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; the sections are: {', '.join(SECTIONS)}")
    for name in ("data", "model"):
        if name not in raw:
            raise ConfigError(f"{path}: the config needs a [{name}] section")
    for name, allowed in SECTIONS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        if allowed is not None:
            extra = sorted(set(section) - allowed)
            if extra:
                raise ConfigError(f"{path}: unknown key(s) {', '.join(extra)} in [{name}]; the keys are: {', '.join(sorted(allowed))}")
    data = raw["data"]
    if data.get("kind") not in ("pairs", "groups"):
        raise ConfigError(f"{path}: [data] kind must be \"pairs\" or \"groups\", got {data.get('kind')!r}")
    for split in ("train", "validation"):
        if not isinstance(data.get(split), str):
            raise ConfigError(f"{path}: [data] needs {split} = \"<file.jsonl or .csv>\"")
    return JobConfig(path, data, raw["model"], raw.get("train", {}), raw.get("evaluate", {}), raw.get("output", {}),
                     raw.get("tune", {}))
