"""Read comparisons from JSONL (optionally gzipped), CSV, Parquet and Hugging Face datasets.

Every row is validated; errors name the file, line and field. With ``on_error="skip"`` bad
rows are dropped and counted instead of aborting the load.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpl.data.schema import Comparison, DataError

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class FieldMap:
    """Names of the fields holding each part of a comparison in the source data.

    `prompt=None` means the source has no prompt field (the prompt is then empty, and a
    prompt shared by chosen and rejected is recovered later as their common prefix).
    """

    user: str = "user_id"
    """Field holding the user id."""
    prompt: str | None = "prompt"
    """Field holding the prompt ('' or none if the data has none)."""
    chosen: str = "chosen"
    """Field of the preferred response."""
    rejected: str = "rejected"
    """Field of the other response."""


@dataclass
class LoadReport:
    """What a load read and what it skipped."""

    rows: int = 0
    kept: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def skip(self, exc: DataError) -> None:
        """Count a dropped row and its reason; keep the first few messages."""
        self.skipped += 1
        self.reasons[str(exc).split(": ", 1)[-1]] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(str(exc))


def _text(row: Mapping[str, Any], name: str, *, source: str, line: int,
          allow_number: bool = False) -> str:
    if name not in row:
        raise DataError("missing field", source=source, line=line, field_name=name)
    value = row[name]
    if allow_number and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", source=source,
                        line=line, field_name=name)
    if not value.strip():
        raise DataError("empty text", source=source, line=line, field_name=name)
    return value


def parse_row(row: Any, fields: FieldMap, *, source: str, line: int) -> Comparison:
    """Validate one raw row and turn it into a `Comparison`."""
    if not isinstance(row, Mapping):
        raise DataError(f"expected an object, got {type(row).__name__}", source=source, line=line)
    user = _text(row, fields.user, source=source, line=line, allow_number=True)
    prompt = "" if fields.prompt is None else _text(row, fields.prompt, source=source, line=line)
    chosen = _text(row, fields.chosen, source=source, line=line)
    rejected = _text(row, fields.rejected, source=source, line=line)
    if chosen == rejected:
        raise DataError("chosen and rejected are identical", source=source, line=line,
                        field_name=fields.rejected)
    used = {fields.user, fields.prompt, fields.chosen, fields.rejected}
    meta = {k: v for k, v in row.items() if k not in used}
    return Comparison(user_id=user, prompt=prompt, chosen=chosen, rejected=rejected, meta=meta)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw)
            except json.JSONDecodeError as exc:
                yield lineno, DataError(f"bad JSON ({exc.msg} at column {exc.colno})",
                                        source=str(path), line=lineno)


def _iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"bad JSON ({exc.msg})", source=str(path), line=exc.lineno) from exc
    if not isinstance(data, list):
        raise DataError("expected a JSON list of objects", source=str(path))
    yield from enumerate(data, start=1)


def _iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            yield reader.line_num, row


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    line = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):  # streamed, not loaded
        for row in batch.to_pylist():
            line += 1
            yield line, row


def _iter_hf(path: Path, split: str | None) -> Iterator[tuple[int, Any]]:
    from vpl.embed.offline import offline_defaults

    offline_defaults()
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        name = split or ("train" if "train" in ds else None)
        if name is None or name not in ds:
            raise DataError(f"dataset has splits {sorted(ds)}; choose one with split=",
                            source=str(path))
        ds = ds[name]
    yield from enumerate(ds, start=1)


def _is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
    )


def row_iterator(path: Path, split: str | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, raw row) of a JSONL, JSON, CSV or Parquet file or a saved Hugging Face
    dataset; a row that cannot be parsed comes as a `DataError` in its place."""
    name = path.name.lower()
    if _is_hf_dir(path):
        return _iter_hf(path, split)
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return _iter_jsonl(path)
    if name.endswith(".json"):
        return _iter_json(path)
    if name.endswith((".csv", ".csv.gz")):
        return _iter_csv(path)
    if name.endswith(".parquet"):
        return _iter_parquet(path)
    raise DataError(f"unsupported file type (expected one of {', '.join(SUFFIXES)} "
                    "or a saved Hugging Face dataset directory)", source=str(path))


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files to read: each path as given, or a directory's supported files in name order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataError("no such file or directory", source=str(p))
        if p.is_dir() and not _is_hf_dir(p):
            found = sorted(f for f in p.iterdir() if f.name.lower().endswith(SUFFIXES))
            if not found:
                raise DataError("directory holds no data files", source=str(p))
            out.extend(found)
        else:
            out.append(p)
    return out


def _parsed(rows: Iterable[tuple[int, Any]], fields: FieldMap, source: str, on_error: str,
            report: LoadReport) -> Iterator[Comparison]:
    """The valid comparisons of numbered rows, counted in `report`; a bad row raises
    (`on_error` "abort") or is skipped and counted ("skip")."""
    for line, row in rows:
        report.rows += 1
        try:
            if isinstance(row, DataError):
                raise row
            record = parse_row(row, fields, source=source, line=line)
        except DataError as exc:
            if on_error == "abort":
                raise
            report.skip(exc)
            continue
        report.kept += 1
        yield record


def iter_records(paths: str | os.PathLike | Iterable[str | os.PathLike],
                 fields: FieldMap | None = None, *, on_error: str = "abort",
                 split: str | None = None, report: LoadReport | None = None
                 ) -> Iterator[Comparison]:
    """Validated comparisons of files or directories, one at a time (streamed: nothing is held
    but the row being read); counts go to `report` if given."""
    if on_error not in ("abort", "skip"):
        raise ValueError(f"on_error must be 'abort' or 'skip', got {on_error!r}")
    fields = fields or FieldMap()
    report = report if report is not None else LoadReport()
    for path in expand_paths(paths):
        yield from _parsed(row_iterator(path, split), fields, str(path), on_error, report)


def load_records(paths: str | os.PathLike | Iterable[str | os.PathLike],
                 fields: FieldMap | None = None, *, on_error: str = "abort",
                 split: str | None = None) -> tuple[list[Comparison], LoadReport]:
    """Load and validate comparisons from files or directories.

    `on_error` is "abort" (raise `DataError` at the first bad row) or "skip" (drop and count).
    """
    report = LoadReport()
    out = list(iter_records(paths, fields, on_error=on_error, split=split, report=report))
    if report.skipped:
        log.warning("skipped %d bad rows of %d; first: %s", report.skipped, report.rows,
                    report.first_errors[0])
    if not out:
        raise DataError("no valid comparisons", source=", ".join(map(str, expand_paths(paths))))
    return out, report


def records_from_dataset(dataset: Any, fields: FieldMap | None = None, *,
                         on_error: str = "abort", name: str = "<dataset>"
                         ) -> tuple[list[Comparison], LoadReport]:
    """Validate comparisons from an in-memory Hugging Face `Dataset` or a list of dicts."""
    report = LoadReport()
    out = list(_parsed(enumerate(dataset, start=1), fields or FieldMap(), name, on_error,
                       report))
    return out, report


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp creates the file private (0600); give it the usual umask-based mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished temporary directory into place, keeping the old one until done."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_jsonl(path: str | os.PathLike, records: Iterable[Comparison | Mapping[str, Any]]) -> int:
    """Write records as JSON lines, atomically; returns the number written."""
    lines = [json.dumps(r.to_dict() if isinstance(r, Comparison) else dict(r),
                        ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)
