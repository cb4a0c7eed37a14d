"""Persistence: SQLAlchemy 2 models, sessions and repositories (all SQL lives here)."""
