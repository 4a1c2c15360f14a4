"""The feeds benchmark runs end to end at a tiny size; its figures are checked for shape only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from projectionist.cli import cli
from tests.feeds.conftest import NATS_URL, REDIS_URL, require

FIGURES = {
    "log": ("read_events_per_s", "rebuild_events_per_s", "visible_p50_ms", "visible_p99_ms"),
    "nats": ("relay_events_per_s", "read_events_per_s", "rebuild_events_per_s",
             "visible_p50_ms", "visible_p99_ms"),
    "redis": ("relay_events_per_s", "read_events_per_s", "rebuild_events_per_s",
              "visible_p50_ms", "visible_p99_ms"),
}


async def _jetstream_streams() -> set[str]:
    import nats

    client = await nats.connect(NATS_URL)
    try:
        return {str(info.config.name) for info in await client.jetstream().streams_info()}
    finally:
        await client.close()


def test_every_figure_of_every_feed_is_measured_and_the_streams_are_deleted(
    tmp_path: Path,
) -> None:
    import redis

    require(NATS_URL, "NATS with JetStream")
    require(REDIS_URL, "Redis")
    path = tmp_path / "results" / "feeds.json"
    outcome = CliRunner().invoke(cli, [
        "bench", "feeds", "--events", "500", "--commands", "20", "--json", str(path),
        "--dir", str(tmp_path / "db"), "--nats", NATS_URL, "--redis", REDIS_URL,
    ])
    assert outcome.exit_code == 0, outcome.output
    assert "commit → visible" in outcome.output
    result = json.loads(path.read_text())
    assert result["backend"] == "sqlite"
    assert result["events"] == 500 and result["commands"] == 20
    assert set(result["sources"]) == set(FIGURES)
    for source, figures in FIGURES.items():
        for figure in figures:
            value = result["sources"][source][figure]
            assert isinstance(value, float) and value > 0, (source, figure, value)
    assert result["verification"]["passed"], result["verification"]["failures"]
    assert not any((tmp_path / "db").iterdir())  # the databases are removed afterwards
    streams = result["settings"]["streams"]
    assert len(streams["nats"]) == len(streams["redis"]) == 2
    assert not set(streams["nats"]) & asyncio.run(_jetstream_streams())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert not client.exists(*(f"projectionist:{name}" for name in streams["redis"]))
    finally:
        client.close()
