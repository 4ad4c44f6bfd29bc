"""Files that cannot lie or be lost: the project's one file hasher, its one atomic writer (of a
file or of a whole directory), its lock, and the checks that keep a path inside a directory.

Layer 0 (beside ``errors``): imports nothing of simplug but the errors, and no torch.

- :func:`sha256_file` is the only file hasher; :class:`HashingWriter` hashes bytes as they are
  written, so a checksum describes the bytes this process wrote, never whatever file is at a path
  later.
- :func:`atomic_write` writes a file under a name unique to this process and call, then
  ``os.replace``-s it into place: readers see the old file or the new one, never a mixture, and two
  processes never write into each other's temporary file.
- :func:`atomic_directory` replaces a whole directory. A directory cannot be swapped in one system
  call, so the swap is two renames under a lock, and every interrupted step is recovered: a kill
  between the renames leaves the old directory as ``.NAME.old-*``, which :func:`recover_directory`
  (called by the next save and by every load that finds nothing at the path) moves back; the
  temporary ``.NAME.tmp-*`` directories of killed saves are removed by the next save, which holds
  the lock, so no live save can own them.
- :func:`checked_relative_path` and :func:`contained_path` keep every path a file names inside its
  directory: relative, normalised, no ``..``, no symlink anywhere on the way.
"""
from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import re
import shutil
import stat
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any, Iterator

from simplug.errors import ModelFormatError

CHUNK_BYTES = 1 << 20
LOCK_SUFFIX = ".lock"
TMP_MARK, _OLD_MARK, _TRASH_MARK = ".tmp-", ".old-", ".trash-"


# ---------------------------------------------------------------------------- hashing
def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HashingWriter:
    """A binary file whose bytes are hashed and counted as they are written."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        self._digest.update(view)
        self.size += len(view)
        return self._fh.write(view)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


# ---------------------------------------------------------------------------- locking
def file_lock(target: str | os.PathLike, timeout: float = -1) -> Any:
    """An exclusive inter-process lock for ``target`` (a file or a directory), held on the
    hidden sibling file ``.NAME.lock``. The operating system releases it when its holder dies
    (a killed process never leaves a stale lock); the lock file itself stays, as deleting a lock
    file that another process may have opened would let two processes hold the lock."""
    from filelock import FileLock

    parent, name = os.path.split(os.path.abspath(os.fspath(target)))
    return FileLock(os.path.join(parent, f".{name}{LOCK_SUFFIX}"), timeout=timeout)


def unique_sibling(path: str, mark: str) -> str:
    """``DIR/.NAME<mark><pid>-<random>``: a name no other process or call will pick."""
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}{mark}{os.getpid()}-{uuid.uuid4().hex[:12]}")


def fsync_directory(path: str) -> None:
    """Make the renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- one file
@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[HashingWriter]:
    """Write ``path`` atomically: yield a :class:`HashingWriter` on a private temporary file
    beside it, which replaces ``path`` only when the block succeeds. After the block the
    writer's ``sha256`` and ``size`` describe exactly the bytes written."""
    path = os.path.abspath(os.fspath(path))
    tmp = unique_sibling(path, TMP_MARK)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = HashingWriter(fh)
            yield writer
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    fsync_directory(os.path.dirname(path))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns its SHA-256."""
    with atomic_write(path) as writer:
        writer.write(data)
    return writer.sha256


def write_json_atomic(path: str | os.PathLike, value: Any) -> str:
    """Write ``value`` as indented JSON to ``path`` atomically; returns the file's SHA-256."""
    import json

    return write_bytes_atomic(path, json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))


def remove_stale_siblings(path: str, mark: str = TMP_MARK) -> list[str]:
    """Remove the ``.NAME<mark><pid>-<random>`` leftovers of ``path`` (files or directories).
    Only call it while holding ``file_lock(path)``: then no live writer owns them."""
    removed = _siblings(path, mark)
    for full in removed:
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            try:
                os.remove(full)
            except FileNotFoundError:
                pass
    return removed


# ---------------------------------------------------------------------------- a directory
def _siblings(path: str, mark: str) -> list[str]:
    """The ``.NAME<mark><pid>-<random>`` names :func:`unique_sibling` made for ``path`` (exactly:
    the leftovers of a model called ``NAME.old-x`` are not those of ``NAME``)."""
    parent, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(re.escape(f".{name}{mark}") + r"[0-9]+-[0-9a-f]{12}")
    try:
        entries = os.listdir(parent)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(parent, e) for e in entries if pattern.fullmatch(e))


def _discard(directory: str) -> None:
    """Rename then delete: a half-deleted directory only ever carries the ``.trash-`` mark, so an
    ``.old-`` directory is always complete."""
    trash = unique_sibling(directory, _TRASH_MARK)
    try:
        os.rename(directory, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _recover_locked(path: str) -> bool:
    """With the lock held: put back the old directory of a save killed between its two renames,
    and discard what interrupted saves left. Returns True when a directory was put back."""
    restored = False
    olds = _siblings(path, _OLD_MARK)
    if not os.path.lexists(path) and olds:
        # at most one save is between its renames at a time (the lock), so the newest old
        # directory is the model that was at the path
        newest = max(olds, key=lambda p: os.stat(p).st_mtime_ns)
        os.rename(newest, path)
        fsync_directory(os.path.dirname(path))
        olds.remove(newest)
        restored = True
    if os.path.lexists(path):
        for old in olds:  # a save killed after its second rename: the new directory is in place
            _discard(old)
    for leftover in _siblings(path, _TRASH_MARK):
        shutil.rmtree(leftover, ignore_errors=True)
    remove_stale_siblings(path, TMP_MARK)
    return restored


def recover_directory(path: str | os.PathLike) -> bool:
    """If a save of ``path`` was killed between its two renames (nothing at ``path``, its old
    directory beside it as ``.NAME.old-*``), move the old directory back. Waits for a save in
    progress. Returns True when it restored one."""
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) or not _siblings(path, _OLD_MARK):
        return False
    with file_lock(path):
        return _recover_locked(path)


def fsync_tree(directory: str) -> None:
    """fsync every file under ``directory`` (before it is renamed into place)."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(root)


@contextmanager
def atomic_directory(path: str | os.PathLike, replaces_only: str | None = None) -> Iterator[str]:
    """Yield a private temporary directory that replaces ``path`` when the block succeeds.

    Saves of one path run one at a time (:func:`file_lock`); each first recovers what an
    interrupted save left. A kill at any moment leaves the old or the new directory at ``path``,
    or (between the two renames) the old one beside it, which the next load or save puts back.
    With ``replaces_only`` (a file name), an existing non-empty directory is replaced only if it
    holds that file: a save never deletes a folder of other things given by mistake.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
        raise FileExistsError(f"{path} exists and is not a directory (a file or a symbolic link); choose another path")
    with file_lock(path):
        _recover_locked(path)
        if (replaces_only is not None and os.path.isdir(path) and os.listdir(path)
                and not os.path.isfile(os.path.join(path, replaces_only))):
            raise FileExistsError(
                f"{path} is a folder with other things in it (no {replaces_only}); saving there would delete "
                "them. Choose a new or empty folder"
            )
        tmp = unique_sibling(path, TMP_MARK)
        os.makedirs(tmp)
        try:
            yield tmp
            fsync_tree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        if os.path.lexists(path):
            old = unique_sibling(path, _OLD_MARK)
            os.rename(path, old)
        os.rename(tmp, path)
        fsync_directory(parent)
        if old is not None:
            _discard(old)


# ---------------------------------------------------------------------------- paths
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def checked_relative_path(value: Any, what: str = "path") -> str:
    """``value`` if it is a normalised relative POSIX path that stays inside its directory
    (no ``..``, ``.``, empty part, backslash, drive, NUL or control character), else a
    ``ValueError`` naming the problem."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or "\\" in value or _WINDOWS_DRIVE.match(value):
        raise ValueError(f"{what} {value!r} has a control character, a backslash or a drive")
    if value.startswith("/") or posixpath.isabs(value):
        raise ValueError(f"{what} {value!r} is absolute; paths in a model are relative to its directory")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{what} {value!r} is not normalised or leaves its directory (empty part, '.' or '..')")
    return value


def contained_path(root: str, rel: str, what: str = "file") -> str:
    """The full path of ``rel`` inside ``root``, refusing symlinks on the way and anything that
    resolves outside ``root`` (raises ``ModelFormatError``)."""
    try:
        checked_relative_path(rel, what)
    except ValueError as exc:
        raise ModelFormatError(f"{root}: {exc}") from None
    real_root = os.path.realpath(root)
    current = real_root
    for part in rel.split("/"):
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return current  # the caller reports a missing file in its own words
        if stat.S_ISLNK(mode):
            raise ModelFormatError(
                f"{root}: {what} {rel!r} goes through a symbolic link ({os.path.relpath(current, real_root)}); "
                "a saved model holds real files only. Copy the model with its files (cp -rL), not links"
            )
    if os.path.commonpath([real_root, os.path.realpath(current)]) != real_root:
        raise ModelFormatError(f"{root}: {what} {rel!r} resolves outside the model directory")
    return current


def read_contained(root: str, rel: str, max_bytes: int, what: str = "file") -> bytes:
    """Read at most ``max_bytes + 1`` bytes of ``rel`` inside ``root`` (see
    :func:`contained_path`), without following a symlink at the last step either."""
    full = contained_path(root, rel, what)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(full, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelFormatError(f"{root}: {what} {rel!r} is a symbolic link; a saved model holds real files only") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ModelFormatError(f"{root}: {what} {rel!r} is not a regular file")
        return fh.read(max_bytes + 1)


def listed_tree(root: str) -> tuple[list[str], list[str]]:
    """Relative POSIX paths of the regular files under ``root`` and of everything else found
    there (symlinks, sockets, ...), without following links."""
    files: list[str] = []
    others: list[str] = []
    for current, dirs, names in os.walk(root, followlinks=False):
        for name in list(dirs):
            full = os.path.join(current, name)
            if os.path.islink(full):
                others.append(os.path.relpath(full, root).replace(os.sep, "/"))
                dirs.remove(name)
        for name in names:
            full = os.path.join(current, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            (files if stat.S_ISREG(os.lstat(full).st_mode) else others).append(rel)
    return sorted(files), sorted(others)


# ---------------------------------------------------------------------------- checked reading
def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


class CheckedDirectory:
    """A directory whose every file is listed with its size and SHA-256 (a saved model).
    :meth:`read_bytes` is the one way a loader reads such a file: the path must be listed and
    inside the directory, and the bytes returned are the bytes checked."""

    def __init__(self, root: str, table: Any):
        self.root = os.path.abspath(root)
        self.table = table  # {relative path: {"size": int, "sha256": str}}

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` (absolute, or relative to the root) as a listed-form relative path."""
        path = os.fspath(path)
        full = os.path.abspath(path)  # a relative path means what it means to open(): from the working directory
        if not _inside(full, self.root):
            full = os.path.abspath(os.path.join(self.root, path))  # or one relative to the model itself
        rel = os.path.relpath(full, self.root).replace(os.sep, "/")
        if rel == ".." or rel.startswith("../"):
            raise ModelFormatError(
                f"{self.root}: a loader asked for {path}, outside the model directory; a saved model "
                "reads only its own files"
            )
        return rel

    def read_bytes(self, path: str | os.PathLike, what: str = "file") -> bytes:
        rel = self.relative(path)
        entry = self.table.get(rel)
        if entry is None:
            raise ModelFormatError(
                f"{self.root}: {rel} is not listed in the manifest, so it cannot be checked and is "
                "not read. Save the model again with simplug"
            )
        size, expected = int(entry["size"]), entry["sha256"]
        try:
            data = read_contained(self.root, rel, size, what)
        except FileNotFoundError:
            raise ModelFormatError(
                f"{self.root} is incomplete: {rel} is missing. Copy the whole model directory, or save it again"
            ) from None
        if len(data) != size:
            raise ModelFormatError(
                f"{self.root} is corrupt: {rel} has {'more than ' if len(data) > size else ''}{len(data)} bytes, "
                f"the manifest says {size} (truncated or overwritten). Copy or save the model again"
            )
        if hashlib.sha256(data).hexdigest() != expected:
            raise ModelFormatError(f"{self.root} is corrupt: {rel} does not match its checksum. Copy or save the model again")
        return data


_reading: "ContextVar[CheckedDirectory | None]" = ContextVar("simplug_checked_directory", default=None)


@contextmanager
def reading_checked(directory: CheckedDirectory) -> Iterator[CheckedDirectory]:
    """While loading a saved model: :func:`read_model_file` reads through ``directory``."""
    token = _reading.set(directory)
    try:
        yield directory
    finally:
        _reading.reset(token)


def read_model_file(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of a component's file. While a saved model loads (:func:`reading_checked`) the
    file must be one the manifest lists, inside the model, and matching its checksum; outside a
    model load (a component's own ``load`` called on a directory) it is read as it is."""
    directory = _reading.get()
    if directory is None:
        with open(path, "rb") as fh:
            return fh.read()
    return directory.read_bytes(path, what)


def checked_directory() -> CheckedDirectory | None:
    """The saved model being loaded, if any (for loaders that check a whole folder first)."""
    return _reading.get()
