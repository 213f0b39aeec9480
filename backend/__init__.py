"""Orchestration layer: CLI now; service, database and jobs later."""
