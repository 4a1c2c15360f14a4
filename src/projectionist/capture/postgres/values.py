"""Column values of pgoutput's text format as JSON values, by the column's type."""

from __future__ import annotations

import json
from typing import Any

_INTEGERS = frozenset({20, 21, 23, 26})  # int8, int2, int4, oid
_FLOATS = frozenset({700, 701})  # float4, float8
_JSON = frozenset({114, 3802})  # json, jsonb
_BOOL = 16
_BYTEA = 17


def value(type_oid: int, text: bytes) -> Any:
    """A column's value: integers, floats, booleans and JSON as such, bytea as hexadecimal
    text (as the SQLite triggers write BLOBs), everything else (numeric included, which keeps
    its exact digits) as PostgreSQL's text."""
    decoded = text.decode()
    if type_oid in _INTEGERS:
        return int(decoded)
    if type_oid in _FLOATS:
        return float(decoded)
    if type_oid == _BOOL:
        return decoded == "t"
    if type_oid in _JSON:
        return json.loads(decoded)
    if type_oid == _BYTEA:
        return decoded.removeprefix("\\x")
    return decoded


def binary_value(data: bytes) -> str:
    """A value sent in binary: its bytes as hexadecimal text."""
    return data.hex()
