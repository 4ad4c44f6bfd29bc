"""The ``simplug`` command. Listing and reading manifests import no torch."""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from simplug.errors import SimplugError

app = typer.Typer(
    name="simplug",
    help="Fine-tune similarity-learning models from pluggable components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
    return "\n".join(lines)


def _read_manifest(model: str) -> dict:
    from simplug.manifest import read_manifest

    try:
        return read_manifest(model, verify_files=False)
    except SimplugError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@app.command("list")
def list_components(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="only this kind (heads, losses, ...)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    hooks: bool = typer.Option(False, "--hooks", help="list plugins and the hooks each implements"),
) -> None:
    """List installed components and the plugins that provide them."""
    from simplug.registry import Registry, normalize_kind

    try:
        registry = Registry()
        wanted = normalize_kind(kind) if kind else None
    except SimplugError as exc:
        _fail(str(exc))
    if hooks:
        plugins = [
            {"plugin": p.name, "module": p.module, "distribution": p.distribution, "version": p.version,
             "status": p.status, "hooks": p.hooks, "error": p.error}
            for p in registry.plugins
        ]
        if as_json:
            typer.echo(json.dumps(plugins, indent=2))
        else:
            headers = ["plugin", "distribution", "version", "status", "hooks"]
            typer.echo(_table(headers, [[p["plugin"], p["distribution"], p["version"], p["status"],
                                         ", ".join(p["hooks"]) or "-"] for p in plugins]))
        return
    rows = []
    for record in registry.components(wanted):
        rows.append({**record.as_dict(), "status": "ok"})
    for plugin in registry.plugins:
        if plugin.status != "ok":
            rows.append(
                {
                    "kind": "-",
                    "name": "-",
                    "plugin": plugin.name,
                    "entry_point": plugin.module,
                    "distribution": plugin.distribution,
                    "version": plugin.version,
                    "status": plugin.status,
                    "error": plugin.error,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    headers = ["kind", "name", "plugin", "distribution", "version", "status"]
    table_rows = [[str(r[h]) for h in headers] for r in rows]
    typer.echo(_table(headers, table_rows))
    for r in rows:
        if r["status"] == "broken":
            typer.echo(f"\n{r['plugin']} ({r['distribution']} {r['version']}) is broken: {r['error']}", err=True)


@app.command()
def info(model: str = typer.Argument(..., help="saved model directory")) -> None:
    """Show a saved model's manifest: components, where they come from, files."""
    manifest = _read_manifest(model)
    typer.echo(f"model: {model}")
    typer.echo(f"format: {manifest['format']} v{manifest['format_version']}, saved by simplug {manifest.get('simplug_version')}")
    typer.echo(f"embedding size: {manifest.get('embedding_size')}")
    rows = []
    for c in manifest["components"]:
        if c.get("source") == "local":
            rows.append([c["role"], c["kind"], c["class"], "(local code)", "", json.dumps(c.get("config", {}))[:60]])
        else:
            rows.append([c["role"], c["kind"], c["name"], c["distribution"], c.get("version", ""), json.dumps(c.get("config", {}))[:60]])
    typer.echo(_table(["role", "kind", "name", "distribution", "version", "config"], rows))
    if manifest.get("training"):
        typer.echo(f"training: {json.dumps(manifest['training'])}")
    total = sum(f["size"] for f in manifest["files"].values())
    typer.echo(f"files: {len(manifest['files'])} ({total / 1e6:.2f} MB)")


@app.command()
def requirements(model: str = typer.Argument(..., help="saved model directory")) -> None:
    """Print the pip requirement lines a saved model needs to be served."""
    from simplug.manifest import local_code_notes, requirements as model_requirements

    manifest = _read_manifest(model)
    for line in model_requirements(manifest):
        typer.echo(line)
    for note in local_code_notes(manifest):
        typer.echo(f"# local code (load with trust_local_code=True): {note}")


@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="distribution name of the new package, e.g. simplug-attention-head"),
    kind: str = typer.Option(..., "--kind", "-k", help="heads, losses, encoders, distances, metrics or cache_backends"),
    directory: str = typer.Option(".", "--dir", help="directory to create the package in (as DIR/NAME)"),
) -> None:
    """Write a plugin package with one working component, its tests and a README."""
    from simplug.registry import singular_kind
    from simplug.scaffold import create_plugin

    try:
        created = create_plugin(name, kind, directory)
    except SimplugError as exc:
        _fail(str(exc))
    typer.echo(f"created {created.path}: the {singular_kind(created.kind)} {created.component!r} "
               f"({created.module}.{created.class_name})")
    for rel in created.files:
        typer.echo(f"  {rel}")
    typer.echo(f"next: cd {created.path} && pip install -e '.[test]' && python -m pytest")


def main() -> None:
    try:
        app()
    except SimplugError as exc:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
