"""Alembic's entry point, run programmatically: the caller hands over an open connection.

``render_as_batch`` lets the same migration alter tables on SQLite (which rebuilds a table to change
a column) and on PostgreSQL (which alters it in place).
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
