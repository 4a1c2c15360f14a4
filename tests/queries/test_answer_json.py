"""An answer's JSON bytes say what `Answer.to_json` says, for everything a handler may return."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from projectionist.queries.dispatch import Answer
from projectionist.readstore.documents import Page
from projectionist.readstore.freshness import Freshness


class Line(BaseModel):
    sku: str
    quantity: int


@dataclass
class Totals:
    count: int
    lines: list[dict[str, Any]]


FRESH = Freshness(position=7, head=9, lag_events=2, lag_ms=1.5, dead_letters=1)


@pytest.mark.parametrize(
    "data",
    [
        {"order": "o-1", "lines": [{"sku": "a", "quantity": 2}], "note": "é ✓"},
        Line(sku="a", quantity=2),
        [Line(sku="a", quantity=1), {"nested": Line(sku="b", quantity=3)}],
        Page(items=[{"k": 1}, {"k": 2}], next="cursor-2"),
        Totals(count=2, lines=[{"sku": "a"}]),
        None,
        2**70,  # past 64 bits: orjson refuses it, the standard encoder takes over
        {"big": -(2**65), "list": (1, 2)},
    ],
    ids=["dict", "model", "mixed", "page", "dataclass", "none", "big-int", "big-in-dict"],
)
def test_bytes_decode_to_what_to_json_gives(data: Any) -> None:
    answer = Answer(data, FRESH)
    assert json.loads(answer.json_bytes()) == answer.to_json()


def test_freshness_is_in_the_bytes() -> None:
    body = json.loads(Answer({"a": 1}, FRESH).json_bytes())
    assert body["freshness"] == {
        "position": 7,
        "head": 9,
        "lag_events": 2,
        "lag_ms": 1.5,
        "dead_letters": 1,
    }
