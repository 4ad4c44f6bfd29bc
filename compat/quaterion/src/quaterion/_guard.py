"""Refuse to run beside the original ``quaterion`` / ``quaterion-models`` distributions."""
from __future__ import annotations

COMPAT_DIST = "simplug-quaterion-compat"
ORIGINALS = ("quaterion", "quaterion-models")


def check_no_original(package: str) -> None:
    from importlib import metadata

    found = []
    for dist_name in ORIGINALS:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        found.append(f"{dist_name} {dist.version}")
    if found:
        raise ImportError(
            f"the import package {package!r} is provided by both {COMPAT_DIST} (simplug's Quaterion "
            f"drop-in) and the original distribution(s) {', '.join(found)}; they overwrite each other's "
            f"files. Keep one: `pip uninstall {' '.join(d.split()[0] for d in found)}` to use the drop-in "
            f"on simplug, or `pip uninstall {COMPAT_DIST}` to use the original."
        )
