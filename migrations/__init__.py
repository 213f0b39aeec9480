"""Alembic migrations of the defectloop database (shipped as a package so they install)."""
