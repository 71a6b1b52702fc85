"""The one record type: a user's comparison of two responses to a prompt."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""

    def __init__(self, message: str, *, source: str = "<data>", line: int | None = None,
                 field_name: str | None = None) -> None:
        where = source if line is None else f"{source}:{line}"
        if field_name is not None:
            where += f": field '{field_name}'"
        super().__init__(f"{where}: {message}")
        self.source, self.line, self.field_name = source, line, field_name


@dataclass(frozen=True)
class Comparison:
    """One labeled comparison: `user_id` preferred `chosen` over `rejected` for `prompt`."""

    user_id: str
    prompt: str
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """Stable content hash identifying this comparison (used to save splits)."""
        h = hashlib.sha1()
        for part in (self.user_id, self.prompt, self.chosen, self.rejected):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        """Flat dict with the four core fields followed by metadata."""
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
        }
        out.update({k: v for k, v in self.meta.items() if k not in out})
        return out
