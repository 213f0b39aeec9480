"""``python -m backend.cli``: the same as the ``defectloop`` console script."""

from backend.cli.app import main

main()
