"""Preference data: records, loaders with validation, user splits, context sampling, generators."""

from vpl.data.contexts import sample_contexts
from vpl.data.io import FieldMap, load_records, records_from_dataset, write_jsonl
from vpl.data.pairs import ContextBatch, PairData
from vpl.data.schema import Comparison, DataError
from vpl.data.split import Split, make_split

__all__ = [
    "Comparison",
    "ContextBatch",
    "DataError",
    "FieldMap",
    "PairData",
    "Split",
    "load_records",
    "make_split",
    "records_from_dataset",
    "sample_contexts",
    "write_jsonl",
]
