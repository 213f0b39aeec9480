"""Thin routes: validate, call a service, map the result."""
