"""The ``defectloop`` command line (entry point ``backend.cli:main``); see :mod:`backend.cli.app`."""

from backend.cli.app import app, main

__all__ = ["app", "main"]
