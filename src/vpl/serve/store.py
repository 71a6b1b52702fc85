"""The service's database: API keys, users and their answered comparisons.

SQLAlchemy 2 over SQLite by default (WAL journal, foreign keys on, full sync so that an
acknowledged answer survives a killed process) or PostgreSQL when the URL names one. The schema
is versioned with Alembic (`vpl/serve/migrations`); `open_database` upgrades it to the newest
revision before use.

Keys are random tokens; only their SHA-256 is stored (they carry 256 bits, so no salt is
needed). Every user belongs to the key that created it and is reachable only with that key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

KEY_PREFIX = "vpl_"
USER_ID = re.compile(r"[0-9a-f]{32}")
"""The form of the user ids the store hands out (`uuid4().hex`)."""


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


def _now() -> datetime:
    return datetime.now(UTC)


class ApiKey(Base):
    """A client's key, stored as its SHA-256."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class User(Base):
    """A user of one client (the key that created it)."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"),
                                        index=True, nullable=False)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    """SHA-256 of the user's annotation token (the annotation page's sign-in), if issued."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Answer(Base):
    """One answered comparison of a user: `chosen` preferred over `rejected` for `prompt`."""

    __tablename__ = "answers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True, nullable=False)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    chosen: Mapped[str] = mapped_column(Text, nullable=False)
    rejected: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Request(Base):
    """A client `request_id` already applied to a user (idempotent retries) and what it
    stored."""

    __tablename__ = "requests"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stored: Mapped[int] = mapped_column(Integer, nullable=False)


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


POOL = {"pool_size": 8, "max_overflow": 32, "pool_timeout": 30}
"""Connections per process: enough for every thread of the server's request pool (40)."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite connections get WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **POOL)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **POOL)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creating it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class UnknownUser(LookupError):
    """No such user (or not one of this key's)."""


class ForbiddenUser(PermissionError):
    """The user exists but belongs to another key."""


@dataclass(frozen=True)
class StoredAnswers:
    """A user's answers, oldest first, and a version that changes with every new answer."""

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    version: int
    """The id of the newest answer (0: none)."""


class Store:
    """The service's operations on the database (no HTTP, no model)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self._sessions() as s, s.begin():
            yield s

    def dispose(self) -> None:
        """Close the engine's connections."""
        self.engine.dispose()

    # keys
    def create_key(self, name: str = "") -> str:
        """A new API key (returned once; only its hash is kept)."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.session() as s:
            s.add(ApiKey(key_hash=hash_key(key), name=name))
        return key

    def key_id(self, key: str) -> int | None:
        """The id of a valid key, else None."""
        with self.session() as s:
            return s.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))

    # users
    def create_user(self, key_id: int) -> str:
        """A new user of key `key_id`; returns its id."""
        uid = uuid.uuid4().hex
        with self.session() as s:
            s.add(User(id=uid, key_id=key_id))
        return uid

    def _own(self, s: Session, key_id: int, user_id: str) -> User:
        if not USER_ID.fullmatch(user_id):  # not one of ours: no lookup (no NUL to the driver)
            raise UnknownUser(user_id)
        user = s.get(User, user_id)
        if user is None:
            raise UnknownUser(user_id)
        if user.key_id != key_id:
            raise ForbiddenUser(user_id)
        return user

    def check_user(self, key_id: int, user_id: str) -> None:
        """Raise `UnknownUser` or `ForbiddenUser` unless the key owns the user."""
        with self.session() as s:
            self._own(s, key_id, user_id)

    def issue_token(self, key_id: int, user_id: str) -> str:
        """A new annotation token for the user (replacing any earlier one): it signs the user in
        on the annotation page and reaches nothing but that user's own queries and answers."""
        token = "usr_" + secrets.token_urlsafe(24)
        try:
            with self.session() as s:
                self._own(s, key_id, user_id).token_hash = hash_key(token)
        except StaleDataError:  # deleted meanwhile
            raise UnknownUser(user_id) from None
        return token

    def token_user(self, token: str) -> tuple[int, str] | None:
        """(key id, user id) of an annotation token, else None."""
        with self.session() as s:
            user = s.scalar(select(User).where(User.token_hash == hash_key(token)))
            return None if user is None else (user.key_id, user.id)

    def delete_user(self, key_id: int, user_id: str) -> None:
        """Forget a user and everything stored for them."""
        with self.session() as s:
            user = self._own(s, key_id, user_id)
            # explicit deletes, so no database depends on ON DELETE CASCADE being honoured
            s.query(Answer).filter(Answer.user_id == user_id).delete()
            s.query(Request).filter(Request.user_id == user_id).delete()
            s.delete(user)

    # answers
    def add_answers(self, key_id: int, user_id: str, rows: Sequence[tuple[str, str, str]],
                    request_id: str | None = None) -> tuple[int, int]:
        """Store answered comparisons (prompt, chosen, rejected) in one transaction: (stored,
        total). A `request_id` already applied stores nothing again and returns what it
        stored then."""
        try:
            with self.session() as s:
                self._own(s, key_id, user_id)
                if request_id is not None:
                    done = s.get(Request, (user_id, request_id))
                    if done is not None:
                        return done.stored, self._count(s, user_id)
                    s.add(Request(user_id=user_id, request_id=request_id, stored=len(rows)))
                    s.flush()  # a concurrent duplicate fails here, before any answer is written
                s.add_all([Answer(user_id=user_id, prompt=p, chosen=c, rejected=r)
                           for p, c, r in rows])
                s.flush()
                return len(rows), self._count(s, user_id)
        except IntegrityError:
            with self.session() as s:
                self._own(s, key_id, user_id)  # deleted meanwhile: UnknownUser
                done = None if request_id is None else s.get(Request, (user_id, request_id))
                if done is None:
                    raise
                # the concurrent duplicate won: report its result
                return done.stored, self._count(s, user_id)

    @staticmethod
    def _count(s: Session, user_id: str) -> int:
        return int(s.scalar(select(func.count()).select_from(Answer)
                            .where(Answer.user_id == user_id)) or 0)

    def version(self, key_id: int, user_id: str) -> int:
        """The version of a user's answers (`StoredAnswers.version`) without reading them."""
        with self.session() as s:
            self._own(s, key_id, user_id)
            return int(s.scalar(select(func.max(Answer.id)).where(Answer.user_id == user_id))
                       or 0)

    def answers(self, key_id: int, user_id: str) -> StoredAnswers:
        """All of a user's answers, oldest first."""
        with self.session() as s:
            self._own(s, key_id, user_id)
            rows = s.execute(select(Answer.id, Answer.prompt, Answer.chosen, Answer.rejected)
                             .where(Answer.user_id == user_id).order_by(Answer.id)).all()
        return StoredAnswers([r.prompt for r in rows], [r.chosen for r in rows],
                             [r.rejected for r in rows], rows[-1].id if rows else 0)

    def count_answers(self, user_id: str | None = None) -> int:
        """Answers stored for one user, or in all."""
        with self.session() as s:
            q = select(func.count()).select_from(Answer)
            if user_id is not None:
                q = q.where(Answer.user_id == user_id)
            return int(s.scalar(q) or 0)
