"""The ``simplug`` command line. Importing it imports no torch: commands import their heavy
parts when they run."""
from simplug.cli.commands import app, main

__all__ = ["app", "main"]
