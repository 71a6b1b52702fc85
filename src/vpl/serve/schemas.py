"""Request and response bodies of the HTTP API (`/v1`), with their limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TEXT = 20_000
"""Characters in one prompt or response."""
MAX_ITEMS = 1_000
"""Comparisons in one request, candidates in one query, answers per call."""
MAX_RESPONSES = 256
"""Responses scored in one request."""
MAX_BODY = 4 * 1024 * 1024
"""Bytes in one request body."""

NO_NUL = r"^[^\x00]*$"
"""Texts may hold any character but NUL (which PostgreSQL cannot store)."""
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)]
NonEmpty = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreatedUser(BaseModel):
    user_id: str


class Comparison(_Strict):
    prompt: Text = ""
    chosen: NonEmpty
    rejected: NonEmpty


class AddComparisons(_Strict):
    comparisons: list[Comparison] = Field(min_length=1, max_length=MAX_ITEMS)
    request_id: Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL)] | None = None
    """Retrying with the same id stores nothing twice (ids starting `pool:` are reserved for
    the annotation page)."""

    @field_validator("request_id")
    @classmethod
    def _not_reserved(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("pool:"):
            raise ValueError("request ids starting 'pool:' are reserved")
        return v


class Stored(BaseModel):
    stored: int
    total: int


class Candidate(_Strict):
    prompt: Text = ""
    a: NonEmpty
    b: NonEmpty


class NextQuery(_Strict):
    candidates: list[Candidate] = Field(min_length=1, max_length=MAX_ITEMS)


class Query(BaseModel):
    index: int
    info_gain: float
    """Expected information about the user from the answer (nats)."""


class Latent(BaseModel):
    mean: list[float]
    std: list[float]
    n_answers: int


class ScoreRequest(_Strict):
    prompt: Text = ""
    responses: list[NonEmpty] = Field(min_length=1, max_length=MAX_RESPONSES)


class Score(BaseModel):
    reward: float
    std: float


class Scores(BaseModel):
    scores: list[Score]
    best: int


class Token(BaseModel):
    token: str
    """Signs the user in on the annotation page (`/`); reaches only this user's queries."""


class PoolQuery(BaseModel):
    """The next pair the annotation page shows, or none left."""

    index: int | None
    prompt: str = ""
    a: str = ""
    b: str = ""
    n_answers: int
    remaining: int
    certainty: float
    """1 - (posterior spread / prior spread), averaged over latent dimensions, in [0, 1]."""


class PoolAnswer(_Strict):
    index: Annotated[int, Field(ge=0)]
    choice: Annotated[str, Field(pattern="^(a|b)$")]
