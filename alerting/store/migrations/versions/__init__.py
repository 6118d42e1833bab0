"""One file per schema version, applied in order on SQLite and PostgreSQL alike."""
