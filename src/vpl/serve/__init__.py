"""The personalization service: users and their answered comparisons in a database, a trained
run that infers each user's latent from them, and an HTTP API (FastAPI) over both.

- `store`: the database (SQLAlchemy; SQLite by default, PostgreSQL by URL; Alembic migrations),
  API keys and tenant isolation;
- `scorer`: one trained run loaded once per process: embeds texts (with the disk cache),
  infers a user's posterior from their answers, scores responses, chooses the next query;
- `service`: the operations, knowing no HTTP; `app`: the routes; `cli`: `vpl serve`, `vpl score`.
"""
