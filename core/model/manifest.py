"""The saved-model manifest: its schema, reading and checking it, and the file table written
with it. Imports no torch.

A manifest comes from a file that anyone may have edited, so it is validated as a whole before
any of it is used: its structure (pydantic models below; a wrong type or a missing field is a
``ModelFormatError`` naming the field), every path (relative, normalised, inside the model, no
symlinks), every name that reaches a command line (PEP 508 distribution names, PEP 440 versions,
requirement strings without URLs), and the files themselves (every file the directory holds is
listed, every listed file has its size and SHA-256).
"""
from __future__ import annotations

import json
import os
import re
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from simplug.errors import ModelFormatError
from simplug.files import (
    CheckedDirectory,
    checked_relative_path,
    contained_path,
    listed_tree,
    read_contained,
    recover_directory,
    sha256_file,
    write_json_atomic,
)

MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "simplug.model"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
HEAD_WEIGHTS = "head.safetensors"
#: a manifest is a description, not a payload (local code and weights are files of their own)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: deeper JSON than this is no configuration simplug writes (and would exhaust the stack)
MAX_JSON_DEPTH = 64

# PEP 508 distribution names
_DISTRIBUTION = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
# component names as the registry accepts them; entry point names; kinds
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@\-]*$")
# an encoder's key is the user's own name: any printable text
_ROLE = re.compile(r"^(encoder:[^\x00-\x1f\x7f]{1,200}|head|head:[a-z]+)$")
_LOCAL_REF = re.compile(r"^local_code/[A-Za-z0-9_.\-]+\.py:[A-Za-z_][A-Za-z0-9_.]*$")


# ---------------------------------------------------------------------------- field validators
def _relative_path(value: str) -> str:
    return checked_relative_path(value, "path")


def distribution_name(value: str) -> str:
    """``value`` if it is a valid PEP 508 distribution name."""
    if not isinstance(value, str) or not _DISTRIBUTION.match(value):
        raise ValueError("is not a valid distribution name (PEP 508: letters, digits, '.', '_', '-')")
    return value


def version_string(value: str) -> str:
    """``value`` if it is a valid PEP 440 version (or empty: unknown)."""
    from packaging.version import InvalidVersion, Version

    if value == "":
        return value
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError("is not a valid version (PEP 440)") from None
    return value


def requirement_string(value: str) -> str:
    """``value`` as a normalised PEP 508 requirement from a package index: a name, extras and
    version specifiers; no URL, no environment marker, no pip option."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(value)
    except InvalidRequirement:
        raise ValueError("is not a valid requirement (PEP 508, e.g. 'sentence-transformers>=3.0')") from None
    if requirement.url or requirement.marker:
        raise ValueError("names a URL or an environment marker; a model may only name packages and versions")
    return str(requirement)


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError("must be letters, digits, '_', '.', '@' or '-'")
    return value


RelativePath = Annotated[str, AfterValidator(_relative_path)]
DistributionName = Annotated[str, AfterValidator(distribution_name)]
VersionString = Annotated[str, AfterValidator(version_string)]
RequirementString = Annotated[str, AfterValidator(requirement_string)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


class FileEntry(_Model):
    size: int = Field(ge=0)
    sha256: Sha256


class ComponentEntry(_Model):
    """One component of a saved model (an encoder or a head)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    role: Annotated[str, Field(pattern=_ROLE.pattern)]
    kind: Identifier
    source: Literal["plugin", "local"]
    name: Optional[Identifier] = None
    plugin: Optional[Identifier] = None
    entry_point: Optional[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:]*$")]] = None
    distribution: Optional[DistributionName] = None
    version: Optional[VersionString] = None
    local_class: Optional[Annotated[str, Field(pattern=_LOCAL_REF.pattern)]] = Field(default=None, alias="class")
    config: dict[str, Any] = Field(default_factory=dict)
    path: Optional[RelativePath] = None
    weights: Optional[RelativePath] = None
    #: every file this component needs; a missing one is an error, never a fresh random init
    files: list[RelativePath]
    #: what pip must install besides the plugin for it to load (e.g. sentence-transformers)
    requires: list[RequirementString] = Field(default_factory=list)
    trainable: Optional[bool] = None
    embedding_size: Optional[int] = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _source_fields(self) -> "ComponentEntry":
        if self.source == "plugin":
            for field in ("name", "plugin", "distribution"):
                if getattr(self, field) is None:
                    raise ValueError(f"a plugin component needs {field!r}")
        elif self.local_class is None:
            raise ValueError("a local component needs 'class' (local_code/FILE.py:CLASS)")
        if self.role.startswith("encoder:") and self.path is None:
            raise ValueError("an encoder needs 'path', its folder in the model")
        if self.role.startswith("head") and self.weights is None:
            raise ValueError("a head needs 'weights', its safetensors file")
        return self


class NestedComponent(_Model):
    """A component recorded inside another's config (a sequential head's layers)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    source: Literal["plugin", "local"]
    name: Optional[Identifier] = None
    plugin: Optional[Identifier] = None
    distribution: Optional[DistributionName] = None
    version: Optional[VersionString] = None
    local_class: Optional[Annotated[str, Field(pattern=_LOCAL_REF.pattern)]] = Field(default=None, alias="class")


class LocalCodeEntry(_Model):
    file: Annotated[RelativePath, Field(pattern=r"^local_code/[A-Za-z0-9_.\-]+\.py$")]
    local_class: str = Field(alias="class")
    origin_module: str


class Manifest(_Model):
    """The schema of ``manifest.json`` (fields added by later versions are allowed)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    format: Literal["simplug.model"]
    format_version: int
    simplug_version: Optional[VersionString] = None
    torch_version: Optional[str] = None
    embedding_size: Optional[int] = None
    encoders: list[str] = Field(default_factory=list)
    sides: list[str] = Field(default_factory=list)
    components: list[ComponentEntry]
    files: dict[RelativePath, FileEntry]
    local_code: list[LocalCodeEntry] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------------------- reading
def _describe_validation_error(manifest_path: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg']}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return (
        f"{manifest_path} is not a valid simplug manifest: {'; '.join(problems)}{more}. The model is "
        "damaged or was not written by simplug: save it again"
    )


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _parse(manifest_path: str, data: bytes) -> Any:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ModelFormatError(
            f"{manifest_path} is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB; a simplug manifest is "
            "a short description. The model is damaged or was not written by simplug"
        )
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{manifest_path} is not valid JSON ({exc}); the model is corrupt") from None
    except RecursionError:
        value = None
        depth_error = True
    else:
        depth_error = _json_depth_exceeds(value, MAX_JSON_DEPTH)
    if depth_error:
        raise ModelFormatError(
            f"{manifest_path} nests deeper than {MAX_JSON_DEPTH} levels; no simplug model does. The model is "
            "damaged or was not written by simplug"
        )
    return value


def _nested_components(value: Any) -> list[dict[str, Any]]:
    """Component entries recorded inside a config (``{"source": "plugin", "kind": ...}``)."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("source") in ("plugin", "local") and "kind" in item:
                found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _check_consistency(path: str, manifest_path: str, model: Manifest) -> None:
    listed = set(model.files)
    if MANIFEST_FILE in listed:
        raise ModelFormatError(f"{manifest_path} lists itself in 'files'; the model is damaged: save it again")
    for index, component in enumerate(model.components):
        where = f"components.{index} ({component.role})"
        for rel in component.files:
            if rel not in listed:
                raise ModelFormatError(
                    f"{path}: {where} needs {rel}, which the manifest's 'files' does not list; the model is "
                    "incomplete: copy the whole model directory, or save it again"
                )
        if component.weights is not None and component.weights not in component.files:
            raise ModelFormatError(f"{manifest_path}: {where}.weights {component.weights!r} is not one of its files")
        if component.path is not None:
            if not component.files:
                raise ModelFormatError(f"{manifest_path}: {where}.files is empty; an encoder saves at least its config")
            outside = [rel for rel in component.files if not rel.startswith(component.path + "/")]
            if outside:
                raise ModelFormatError(f"{manifest_path}: {where}.files {outside} are outside its path {component.path!r}")
        for nested_index, nested in enumerate(_nested_components(component.config)):
            try:
                NestedComponent.model_validate(nested)
            except ValidationError as exc:
                message = _describe_validation_error(manifest_path, exc)
                raise ModelFormatError(message.replace(" is not a valid simplug manifest: ",
                                                       f" is not a valid simplug manifest: {where}.config component {nested_index}: ")) from None
    local_files = {entry.file for entry in model.local_code}
    for rel in local_files - listed:
        raise ModelFormatError(f"{path}: local code {rel} is not listed in 'files'; the model is incomplete: save it again")
    for component in model.components:
        if component.local_class is not None and component.local_class.rpartition(":")[0] not in local_files:
            raise ModelFormatError(f"{manifest_path}: {component.role} names local code that 'local_code' does not list")


def read_manifest(path: str, verify_files: bool = True) -> dict[str, Any]:
    """Read and validate a saved model's manifest; with ``verify_files`` also check that the
    directory holds exactly the listed files, with their sizes and hashes.

    A model whose save was killed between its two renames is put back first (see
    ``simplug.files.atomic_directory``)."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        try:
            recover_directory(path)
        except OSError as exc:
            raise ModelFormatError(
                f"{path} does not exist; a save killed midway left the previous model beside it (.NAME.old-*) "
                f"and it cannot be moved back ({exc.strerror or exc}): rename it to {os.path.basename(path)} by hand"
            ) from None
    if not os.path.isdir(path):
        raise ModelFormatError(f"{path} is not a directory; a simplug model is a directory saved by save_servable")
    manifest_path = os.path.join(path, MANIFEST_FILE)
    try:
        data = read_contained(path, MANIFEST_FILE, MAX_MANIFEST_BYTES, "manifest")
    except FileNotFoundError:
        raise ModelFormatError(
            f"{path} is not a simplug model: it has no {MANIFEST_FILE}. Save one with "
            "TrainableModel.save_servable(path) or SimilarityModel.save(path)"
        ) from None
    except OSError as exc:
        raise ModelFormatError(f"{manifest_path} cannot be read ({exc.strerror or exc})") from None
    manifest = _parse(manifest_path, data)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{manifest_path} is not a simplug model manifest (no format {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        newest = max(SUPPORTED_FORMAT_VERSIONS)
        hint = (
            "it was written by a newer simplug: upgrade simplug (pip install -U simplug)"
            if isinstance(version, int) and version > newest
            else "the manifest is damaged or was not written by simplug"
        )
        saved_by = manifest.get("simplug_version")
        raise ModelFormatError(
            f"{path} has model format version {version!r}; this simplug "
            f"({saved_by if isinstance(saved_by, str) else '?'!r} wrote it) reads versions "
            f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}: {hint}"
        )
    try:
        validated = Manifest.model_validate(manifest)
    except ValidationError as exc:
        raise ModelFormatError(_describe_validation_error(manifest_path, exc)) from None
    _check_consistency(path, manifest_path, validated)
    if verify_files:
        verify_model_files(path, manifest)
    return manifest


def verify_model_files(path: str, manifest: dict[str, Any]) -> None:
    """The directory holds exactly the listed files (and the manifest), as regular files inside
    it, each of its recorded size and SHA-256."""
    present, others = listed_tree(path)
    if others:
        raise ModelFormatError(
            f"{path} holds {others[0]!r}, which is a symbolic link or not a regular file; a saved model holds "
            "real files only. Copy the model with its files (cp -rL), or save it again"
        )
    unlisted = sorted(set(present) - set(manifest["files"]) - {MANIFEST_FILE})
    if unlisted:
        raise ModelFormatError(
            f"{path} holds {unlisted[0]!r}, which the manifest does not list (so nothing could check it). "
            "Remove it, or save the model again"
        )
    for rel, expected in manifest["files"].items():
        full = contained_path(path, rel)
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


def model_files(path: str, manifest: dict[str, Any]) -> CheckedDirectory:
    """The one reader of a saved model's files (see ``simplug.files.CheckedDirectory``)."""
    return CheckedDirectory(path, manifest["files"])


# ---------------------------------------------------------------------------- writing
def file_table(directory: str) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``directory`` but the manifest itself."""
    files, others = listed_tree(directory)
    if others:
        raise ModelFormatError(
            f"cannot save: a component wrote {others[0]!r}, a symbolic link or special file; a saved "
            "model holds regular files only"
        )
    table = {}
    for rel in files:
        if rel == MANIFEST_FILE:
            continue
        checked_relative_path(rel, "saved file")
        full = os.path.join(directory, rel)
        table[rel] = {"size": os.path.getsize(full), "sha256": sha256_file(full)}
    return table


def files_under(table: dict[str, Any], folder: str) -> list[str]:
    """The listed files inside ``folder`` (a component's folder in the model)."""
    return sorted(rel for rel in table if rel.startswith(folder.rstrip("/") + "/"))


def write_manifest(directory: str, manifest: dict[str, Any], table: dict[str, dict[str, Any]] | None = None) -> None:
    """Write ``manifest.json`` into a model being saved, with the table of its files (measured
    here unless given), and check the result reads back as a valid manifest."""
    manifest = {**manifest, "files": table if table is not None else file_table(directory)}
    write_json_atomic(os.path.join(directory, MANIFEST_FILE), manifest)
    read_manifest(directory, verify_files=False)  # a save never writes what a load would refuse


# ---------------------------------------------------------------------------- requirements
def requirements(manifest: dict[str, Any]) -> list[str]:
    """pip requirement lines for what a saved model needs: simplug, the plugins' distributions
    (also those nested in a component's config) and what components declare in ``requires``.
    Every line is validated again here: nothing from a manifest becomes a pip option."""
    lines: list[str] = []

    def add(line: str) -> None:
        line = requirement_string(line)
        if line not in lines:
            lines.append(line)

    if manifest.get("simplug_version"):
        add(f"simplug=={version_string(manifest['simplug_version'])}")
    for component in _plugin_entries(manifest["components"]):
        dist = distribution_name(component["distribution"])
        version = version_string(component.get("version") or "")
        add(f"{dist}=={version}" if version else dist)
    for component in manifest["components"]:
        for requirement in component.get("requires", []):
            add(requirement)
    return lines


def _plugin_entries(value: Any) -> list[dict[str, Any]]:
    """Plugin components, including those nested in a component's config (the layers of a
    sequential head, the options of a switch head), in the order they appear."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("source") == "plugin" and "distribution" in item:
                found.append(item)
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def local_code_notes(manifest: dict[str, Any]) -> list[str]:
    return [f"{c['role']}: {c['class']}" for c in manifest["components"] if c.get("source") == "local"]
