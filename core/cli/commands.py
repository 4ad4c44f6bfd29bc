"""The ``simplug`` command. Listing and reading manifests import no torch."""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from simplug.cli.tables import format_comparison, text_table
from simplug.errors import SimplugError
from simplug.registry.kinds import NAMES as KIND_NAMES

app = typer.Typer(
    name="simplug",
    help="Fine-tune similarity-learning models from pluggable components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _printable(value: object) -> str:
    """``value`` as text safe for a terminal: control characters (ANSI escapes, carriage returns,
    bidirectional overrides) from a model file are shown escaped, never sent to the terminal."""
    text = value if isinstance(value, str) else str(value)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _read_manifest(model: str) -> dict:
    from simplug.model.manifest import read_manifest

    try:
        return read_manifest(model, verify_files=False)
    except SimplugError as exc:
        _fail(_printable(exc))
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
    except KeyboardInterrupt:  # a real Ctrl-C (a plugin's own KeyboardInterrupt makes it broken)
        _fail("interrupted (Ctrl-C) while loading plugins; nothing was listed", INTERRUPTED)
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
            typer.echo(text_table(headers, [[p["plugin"], p["distribution"], p["version"], p["status"],
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
    typer.echo(text_table(headers, table_rows))
    for r in rows:
        if r["status"] == "broken":
            typer.echo(f"\n{r['plugin']} ({r['distribution']} {r['version']}) is broken: {r['error']}", err=True)


@app.command()
def info(model: str = typer.Argument(..., help="saved model directory")) -> None:
    """Show a saved model's manifest: components, where they come from, files."""
    manifest = _read_manifest(model)
    p = _printable
    typer.echo(f"model: {p(model)}")
    typer.echo(f"format: {p(manifest['format'])} v{manifest['format_version']}, saved by simplug {p(manifest.get('simplug_version'))}")
    typer.echo(f"embedding size: {p(manifest.get('embedding_size'))}")
    rows = []
    for c in manifest["components"]:
        config = json.dumps(c.get("config", {}))[:60]
        if c.get("source") == "local":
            rows.append([p(c["role"]), p(c["kind"]), p(c["class"]), "(local code)", "", p(config)])
        else:
            rows.append([p(c["role"]), p(c["kind"]), p(c["name"]), p(c["distribution"]), p(c.get("version") or ""), p(config)])
    typer.echo(text_table(["role", "kind", "name", "distribution", "version", "config"], rows))
    if manifest.get("training"):
        typer.echo(f"training: {p(json.dumps(manifest['training']))}")
    total = sum(f["size"] for f in manifest["files"].values())
    typer.echo(f"files: {len(manifest['files'])} ({total / 1e6:.2f} MB)")


@app.command()
def requirements(model: str = typer.Argument(..., help="saved model directory")) -> None:
    """Print the pip requirement lines a saved model needs to be loaded and served: simplug, the
    plugins' distributions, and what its components declare (e.g. sentence-transformers)."""
    from simplug.model.manifest import local_code_notes, requirements as model_requirements

    manifest = _read_manifest(model)
    try:
        lines = model_requirements(manifest)  # each one a validated PEP 508 requirement, never a pip option
    except (SimplugError, ValueError) as exc:
        _fail(_printable(f"{model}: a requirement in its manifest {exc}; the model is damaged or hostile"))
    for line in lines:
        typer.echo(_printable(line))
    for note in local_code_notes(manifest):
        typer.echo(f"# local code (load with trust_local_code=True): {_printable(note)}")


@app.command()
def serve(
    model: str = typer.Argument(..., help="saved model directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; the default is loopback only"),
    port: int = typer.Option(8000, "--port", help="TCP port; 0 picks a free one (printed at start)"),
    max_batch: int = typer.Option(256, "--max-batch", min=1, help="most objects in one request (more: 413)"),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", min=1, help="largest request body (more: 413, not read)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="objects per forward pass inside a request"),
    max_connections: int = typer.Option(64, "--max-connections", min=1, help="connections handled at once; more wait"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run the local code saved with the model"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no access log"),
) -> None:
    """Serve a saved model over HTTP: POST /encode, GET /health, GET /info (JSON)."""
    from simplug.serving.http import is_loopback, make_server
    from simplug.model.similarity_model import SimilarityModel

    try:
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        server = make_server(
            loaded, host=host, port=port, max_batch=max_batch, max_body_bytes=max_body_bytes,
            batch_size=batch_size, max_connections=max_connections, access_log=not quiet,
        )
    except SimplugError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port, or 0 for any free one")
    if not is_loopback(host):
        typer.echo(f"warning: listening on {host}, reachable from other machines; there is no authentication", err=True)
    typer.echo(f"serving {model} on {server.url} (POST /encode, GET /health, GET /info); Ctrl-C stops")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    finally:
        server.server_close()


@app.command("export")
def export_model(
    model: str = typer.Argument(..., help="saved model directory"),
    output: str = typer.Option(..., "--output", "-o", help="file to write, e.g. model.onnx"),
    fmt: str = typer.Option("onnx", "--format", help="export format (onnx)"),
    part: str = typer.Option("model", "--part", help="'model' (tensor encoders + head) or 'head' (head alone)"),
    input_shape: list[str] = typer.Option([], "--input-shape", help="one object's shape where the encoder does not say: DIMS or KEY=DIMS, e.g. 3,28,28"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run the local code saved with the model"),
) -> None:
    """Export the tensor part of a saved model to ONNX, checked against PyTorch with onnxruntime."""
    if fmt != "onnx":
        _fail(f"unknown --format {fmt!r}; the formats are: onnx")
    from simplug.serving.export import export_onnx, parse_input_shapes
    from simplug.model.similarity_model import SimilarityModel

    try:
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        shapes = parse_input_shapes(input_shape, list(loaded.encoders))
        report = export_onnx(loaded, output, part=part, input_shapes=shapes, opset=opset)
    except SimplugError as exc:
        _fail(str(exc))
    typer.echo(report.summary())


@app.command()
def train(
    config: str = typer.Argument(..., help="a TOML job config (see examples/category_routing/config.toml)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output directory (default: [output] dir)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="override [train] epochs"),
) -> None:
    """Train from a config; print held-out metrics before and after; save model, logs, report, plot."""
    from simplug.cli.train_job import run_training
    from simplug.errors import TrainingInterrupted

    try:
        run_training(config, output_dir=out, epochs=epochs, echo=typer.echo)
    except TrainingInterrupted as exc:
        _fail(str(exc), INTERRUPTED)
    except KeyboardInterrupt:  # a second Ctrl-C, or one while the outputs were written
        _fail("interrupted (Ctrl-C); a model being saved is either complete or absent (saves are atomic)", INTERRUPTED)
    except SimplugError as exc:
        _fail(str(exc))


@app.command()
def tune(
    config: str = typer.Argument(..., help="a TOML job config with a [tune] section (see examples/category_routing/config.toml)"),
    trials: Optional[int] = typer.Option(None, "--trials", help="finished trials the study should hold (default: [tune] trials, 20)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop starting trials after this many seconds"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output directory (default: [tune] dir, else <[output] dir>/tune)"),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="study database URL shared by several machines, e.g. postgresql://host/db (default: sqlite in the output directory)"
    ),
) -> None:
    """Search the [tune.space] of a config with Optuna; choose on a validation split carved from
    the training data; score the held-out split once; save the model and a config to retrain it."""
    from simplug.cli.tune_job import run_tuning

    try:
        run_tuning(config, trials=trials, timeout=timeout, out=out, storage=storage, echo=typer.echo)
    except SimplugError as exc:
        _fail(str(exc))


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="saved model directory"),
    data: str = typer.Argument(..., help="JSONL/CSV of pairs (obj_a, obj_b) or groups (obj, group)"),
    candidates: Optional[str] = typer.Option(
        None, "--candidates", help="known items to retrieve from (groups default: each item against the other items)"
    ),
    kind: Optional[str] = typer.Option(None, "--kind", help="pairs or groups (default: as trained, else from the fields)"),
    fields: Optional[str] = typer.Option(
        None, "--fields", help="your column names, e.g. obj=text,group=category (default: as trained, else obj/group, obj_a/obj_b)"
    ),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", "-m", help="a registered metric, NAME or NAME:arg=value,... (e.g. recall:k=5); repeat for "
        "more (default: retrieval_precision@1, retrieval_reciprocal_rank, retrieval_r_precision, recall@1/5/10)"
    ),
    distance: Optional[str] = typer.Option(None, "--distance", help="default: as trained, else cosine"),
    batch_size: int = typer.Option(64, "--batch-size"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run code saved with the model"),
    as_json: bool = typer.Option(False, "--json", help="print only the metrics, as JSON"),
) -> None:
    """Retrieval metrics of a saved model on a data file."""
    from simplug.cli.evaluate_job import parse_metric, run_evaluation

    mapping = {}
    for item in (fields or "").split(","):
        if item.strip():
            ours, sep, theirs = item.partition("=")
            if not sep:
                _fail(f"--fields takes name=column pairs separated by commas, got {item!r}")
            mapping[ours.strip()] = theirs.strip()
    try:
        specs = [parse_metric(text) for text in metric or []]
        result = run_evaluation(model, data, kind=kind, fields=mapping, candidates_path=candidates, distance=distance,
                                metrics=specs, batch_size=batch_size, trust_local_code=trust_local_code)
    except SimplugError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result["metrics"], indent=2))
        return
    typer.echo(f"{result['kind']}, {result['distance']} distance: {result['protocol']}")
    typer.echo(format_comparison({"model": result["metrics"]}))


@app.command()
def encode(
    model: str = typer.Argument(..., help="saved model directory"),
    inputs: str = typer.Argument(..., help=".txt (one text per line), .jsonl (one JSON value per line), .json (a list) or .npy"),
    output: str = typer.Option(..., "--output", "-o", help="where to write the embeddings (.npy)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    trust_local_code: bool = typer.Option(False, "--trust-local-code", help="run code saved with the model"),
    side: Optional[str] = typer.Option(None, "--side", help="query or document, for a model with a head per side"),
) -> None:
    """Embed objects from a file with a saved model and write them as a .npy array."""
    import numpy as np

    from simplug.data.readers import read_objects
    from simplug.model.similarity_model import SimilarityModel

    if not output.endswith(".npy"):
        _fail(f"the output is a NumPy file: give a path ending in .npy, got {output!r}")
    try:
        objects = read_objects(inputs)
        loaded = SimilarityModel.load(model, trust_local_code=trust_local_code)
        embeddings = loaded.encode(objects, batch_size=batch_size, show_progress=True, side=side)
    except (SimplugError, ValueError) as exc:
        _fail(str(exc))
    np.save(output, embeddings)
    typer.echo(f"wrote {embeddings.shape[0]} embeddings of size {embeddings.shape[1]} to {output}")

@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="distribution name of the new package, e.g. simplug-attention-head"),
    kind: str = typer.Option(..., "--kind", "-k", help=f"one of: {', '.join(KIND_NAMES)}"),
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


@app.command("convert-quaterion")
def convert_quaterion(
    old: str = typer.Argument(..., help="a model directory saved by quaterion-models (config.json + weights)"),
    new: str = typer.Argument(..., help="where to write the simplug model (a new directory)"),
    trust_code: bool = typer.Option(
        False, "--trust-code",
        help="import the encoder and head classes named in OLD/config.json and run their load() "
             "(their code runs with your permissions: only for models you trust)"),
) -> None:
    """Turn a model saved by Quaterion's quaterion-models into a simplug model."""
    try:
        from quaterion_models.convert import ConversionError, convert_quaterion_model
    except ImportError:
        _fail("converting needs the Quaterion compatibility distribution: pip install -e compat/quaterion "
              "(from a clone of simplug), then run this again")
    if trust_code:
        typer.echo(f"--trust-code: importing the classes that {old}/config.json names", err=True)
    try:
        written = convert_quaterion_model(old, new, trust_code=trust_code)
    except (ConversionError, SimplugError) as exc:
        _fail(str(exc))
    typer.echo(f"converted {old} -> {written}; serve it with: simplug serve {written}")


def main() -> None:
    try:
        app()
    except SimplugError as exc:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
