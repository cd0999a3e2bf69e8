"""Alembic's entry point: run the migrations on the connection webapp.db.migrate hands over."""

from alembic import context

from webapp.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
