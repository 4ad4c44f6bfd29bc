"""The saved-model manifest: reading, checking and atomic writing. Imports no torch."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from simplug.errors import ModelFormatError

MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "simplug.model"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
HEAD_WEIGHTS = "head.safetensors"


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_table(directory: str) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``directory`` but the manifest itself."""
    table = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            if rel == MANIFEST_FILE:
                continue
            table[rel] = {"size": os.path.getsize(full), "sha256": sha256_file(full)}
    return dict(sorted(table.items()))


def read_manifest(path: str, verify_files: bool = True) -> dict[str, Any]:
    """Read and check a saved model's manifest; with ``verify_files`` every file's size and hash."""
    if not os.path.isdir(path):
        raise ModelFormatError(f"{path} is not a directory; a simplug model is a directory saved by save_servable")
    manifest_path = os.path.join(path, MANIFEST_FILE)
    if not os.path.exists(manifest_path):
        raise ModelFormatError(
            f"{path} is not a simplug model: it has no {MANIFEST_FILE}. Save one with "
            "TrainableModel.save_servable(path) or SimilarityModel.save(path)"
        )
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{manifest_path} is not valid JSON ({exc}); the model is corrupt") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{manifest_path} is not a simplug model manifest (no format {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        newest = max(SUPPORTED_FORMAT_VERSIONS)
        hint = (
            "it was written by a newer simplug: upgrade simplug (pip install -U simplug)"
            if isinstance(version, int) and version > newest
            else "the manifest is damaged or was not written by simplug"
        )
        raise ModelFormatError(
            f"{path} has model format version {version!r}; this simplug "
            f"({manifest.get('simplug_version', '?')} wrote it) reads versions "
            f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}: {hint}"
        )
    for key in ("components", "files"):
        if key not in manifest:
            raise ModelFormatError(f"{manifest_path} lacks {key!r}; the model is corrupt")
    if verify_files:
        verify_model_files(path, manifest)
    return manifest


def verify_model_files(path: str, manifest: dict[str, Any]) -> None:
    for rel, expected in manifest["files"].items():
        full = os.path.join(path, rel)
        if not os.path.isfile(full):
            raise ModelFormatError(
                f"{path} is incomplete: {rel} is missing. Copy the whole model directory, or save it again"
            )
        size = os.path.getsize(full)
        if size != expected["size"]:
            raise ModelFormatError(
                f"{path} is corrupt: {rel} has {size} bytes, the manifest says {expected['size']} "
                "(truncated or overwritten). Copy or save the model again"
            )
        if sha256_file(full) != expected["sha256"]:
            raise ModelFormatError(
                f"{path} is corrupt: {rel} does not match its checksum. Copy or save the model again"
            )


@contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield a temporary directory that replaces ``path`` only when the block succeeds."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        if not os.path.isdir(path):
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(f"{path} exists and is not a directory")
        old = os.path.join(parent, f".{os.path.basename(path)}.old-{uuid.uuid4().hex[:8]}")
        os.rename(path, old)
    os.rename(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_manifest(directory: str, manifest: dict[str, Any]) -> None:
    manifest = {**manifest, "files": file_table(directory)}
    with open(os.path.join(directory, MANIFEST_FILE), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=False)
        fh.flush()
        os.fsync(fh.fileno())


def requirements(manifest: dict[str, Any]) -> list[str]:
    """pip requirement lines for the plugins a saved model needs."""
    lines = [f"simplug=={manifest.get('simplug_version')}"] if manifest.get("simplug_version") else []
    for component in _plugin_entries(manifest["components"]):
        line = f"{component['distribution']}=={component['version']}" if component.get("version") else component["distribution"]
        if line not in lines:
            lines.append(line)
    return lines


def _plugin_entries(value: Any) -> list[dict[str, Any]]:
    """Plugin components, including those nested in a component's config (the layers of a
    sequential head, the options of a switch head)."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if value.get("source") == "plugin" and "distribution" in value:
            found.append(value)
        for item in value.values():
            found.extend(_plugin_entries(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_plugin_entries(item))
    return found


def local_code_notes(manifest: dict[str, Any]) -> list[str]:
    return [f"{c['role']}: {c['class']}" for c in manifest["components"] if c.get("source") == "local"]
