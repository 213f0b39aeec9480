"""Keyword-only service functions; each takes the session explicitly."""
