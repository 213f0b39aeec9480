"""Database tables, engine and sessions."""
