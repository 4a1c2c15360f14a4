"""A partitioned projection fed by JetStream or Redis: each partition follows the feed with a
reader of its own, and the build's read model is whole."""

from __future__ import annotations

from projectionist import Runtime
from tests.feeds.test_feeds import UNREACHABLE_STORE
from tests.helpers import wait_for
from tests.projections.test_partitions import bank, deposits, expected, position, read_back


def test_partitions_follow_the_feed(store_urls: tuple[str, str], events_url: str) -> None:
    write, read = store_urls
    writer = Runtime(bank(partitions=3), store=write, read_store=read, roles=["command"],
                     events=events_url, poll_interval_s=0.05)
    app = bank(partitions=3)
    reader = Runtime(app, store=UNREACHABLE_STORE, read_store=read, roles=["projector"],
                     events=events_url, poll_interval_s=0.05)
    try:
        writer.start()
        reader.start()
        commands = deposits(45)
        for command in commands:
            writer.execute(command)
        head = writer.head()
        wait_for(lambda: position(reader) >= head, timeout_s=30)
        docs, total = read_back(reader, app)
        assert docs == expected(commands)
        assert total == (45, sum(c.cents for c in commands))
    finally:
        reader.stop()
        writer.stop()
