"""Background jobs: records, runner, executors (embedded worker process or RQ)."""
