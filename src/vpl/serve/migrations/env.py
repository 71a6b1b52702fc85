"""Alembic environment of the service's schema: runs on the connection `vpl.serve.store.upgrade`
passes in `config.attributes["connection"]`, or on `sqlalchemy.url` from the config."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from vpl.serve.store import Base

config = context.config
target_metadata = Base.metadata


def run(connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        run(conn)
