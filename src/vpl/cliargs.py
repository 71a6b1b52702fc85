"""Command-line flags generated from config dataclasses (CleanRL style).

Every field of a config becomes a flag `--field-name` (or a name given in `names`) whose help
text is the field's docstring and whose default is the field's default, so the dataclass is
the one place an option is defined and documented. `from_args` builds the config back.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from functools import cache
from typing import Any


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (`x: int = 0` then `\"\"\"...\"\"\"`)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional) of an annotation such as `int`, `float | None`, `str`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])[0], True
    return (tp if isinstance(tp, type) else str), False


def _parse_optional(kind: type):
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def add_config_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                    names: dict[str, str] | None = None, skip: tuple[str, ...] = (),
                    defaults: dict[str, Any] | None = None,
                    choices: dict[str, tuple[Any, ...]] | None = None) -> None:
    """Add a flag per field of dataclass `cls` (except `skip`); `names` renames flags
    (field -> flag without dashes), `defaults` overrides shown defaults, `choices` restricts."""
    names, defaults, choices = names or {}, defaults or {}, choices or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + names.get(f.name, f.name.replace("_", "-"))
        default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING
                               else None)
        kind, optional = _base_type(hints[f.name])
        doc = docs.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        kw: dict[str, Any] = {"dest": f"{cls.__name__}.{f.name}", "default": default,
                              "help": f"{doc} (default: {default})".strip()}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _parse_optional(kind) if optional else kind
            kw["metavar"] = kind.__name__.upper()
            if f.name in choices:
                kw["choices"] = choices[f.name]
        parser.add_argument(flag, **kw)


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The config of class `cls` from parsed flags (fields without a flag keep their default)."""
    prefix = f"{cls.__name__}."
    values = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}
    return cls(**{**values, **extra})
