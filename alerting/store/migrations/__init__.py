"""Alembic migrations of the alerting store, run by ``Database.migrate`` (never by hand)."""
