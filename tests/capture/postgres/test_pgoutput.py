"""The pgoutput decoder, on messages the server itself wrote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projectionist.capture.postgres import pgoutput
from projectionist.capture.postgres.pgoutput import DecodeError, decode, lsn_text, parse_lsn
from tests.capture.postgres.conftest import Database

SLOT = "pj_decoder_test"


@pytest.fixture
def messages(database: Database) -> Iterator[list[pgoutput.Decoded]]:
    database.sql(
        "CREATE TYPE mood AS ENUM ('ok', 'sad')",
        "CREATE TABLE t (id int PRIMARY KEY, name text, big text, m mood, raw bytea)",
        "CREATE PUBLICATION pj_decoder FOR TABLE t",
        f"SELECT pg_create_logical_replication_slot('{SLOT}_{database.name}', 'pgoutput')",
    )
    database.transaction(
        "INSERT INTO t VALUES (1, 'a', repeat('x', 10), 'ok', '\\x00ff')",
        "INSERT INTO t VALUES (2, NULL, "
        "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 200)), 'sad', NULL)",
        "SELECT pg_logical_emit_message(true, 'pj', 'inside')",
    )
    database.sql(
        "UPDATE t SET name = 'b' WHERE id = 2",
        "UPDATE t SET id = 3 WHERE id = 1",
        "DELETE FROM t WHERE id = 2",
        "TRUNCATE t",
    )
    rows = database.sql(
        f"SELECT data FROM pg_logical_slot_peek_binary_changes('{SLOT}_{database.name}', NULL,"
        " NULL, 'proto_version', '1', 'publication_names', 'pj_decoder', 'messages', 'true')"
    )
    yield [decode(bytes(data)) for (data,) in rows]  # type: ignore[arg-type]


def test_every_message_type_the_server_sends_decodes(messages: list[pgoutput.Decoded]) -> None:
    kinds = [type(m).__name__ for m in messages]
    assert kinds == [
        "Begin", "TypeInfo", "Relation", "Insert", "Insert", "Message", "Commit",
        "Begin", "Update", "Commit",
        "Begin", "Update", "Commit",
        "Begin", "Delete", "Commit",
        # A truncate changes the relation's cache, so its description comes again.
        "Begin", "TypeInfo", "Relation", "Truncate", "Commit",
    ]
    begin, type_info, relation, first, second, message, commit = messages[:7]
    assert isinstance(begin, pgoutput.Begin) and isinstance(commit, pgoutput.Commit)
    assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
    assert isinstance(type_info, pgoutput.TypeInfo) and type_info.name == "mood"
    assert isinstance(relation, pgoutput.Relation)
    assert (relation.namespace, relation.name, relation.replica_identity) == ("public", "t", "d")
    assert [(c.name, c.key) for c in relation.columns] == [
        ("id", True), ("name", False), ("big", False), ("m", False), ("raw", False),
    ]
    assert relation.columns[0].type_oid == 23 and relation.columns[3].type_oid == type_info.type_oid
    assert isinstance(first, pgoutput.Insert) and first.relation_id == relation.relation_id
    assert first.new == (
        ("t", b"1"), ("t", b"a"), ("t", b"xxxxxxxxxx"), ("t", b"ok"), ("t", b"\\x00ff"),
    )
    assert isinstance(second, pgoutput.Insert) and second.new[1] == ("n", None)
    assert isinstance(message, pgoutput.Message)
    assert (message.transactional, message.prefix, message.content) == (True, "pj", b"inside")


def test_updates_deletes_and_truncates_carry_what_the_identity_gives(
    messages: list[pgoutput.Decoded],
) -> None:
    update, rekey, delete, truncate = messages[8], messages[11], messages[14], messages[19]
    assert isinstance(update, pgoutput.Update)
    assert update.old is None and update.new[1] == ("t", b"b")
    assert update.new[2] == ("u", None), "a TOASTed value left alone is sent as unchanged"
    assert isinstance(rekey, pgoutput.Update) and rekey.old_kind == "K"
    assert rekey.old is not None and rekey.old[0] == ("t", b"1") and rekey.old[1] == ("n", None)
    assert rekey.new[0] == ("t", b"3")
    assert isinstance(delete, pgoutput.Delete) and delete.old_kind == "K"
    assert delete.old[0] == ("t", b"2")
    assert isinstance(truncate, pgoutput.Truncate) and len(truncate.relation_ids) == 1


def test_bad_bytes_are_refused_with_the_place() -> None:
    with pytest.raises(DecodeError, match="unknown pgoutput message type 'Z'"):
        decode(b"Z")
    with pytest.raises(DecodeError, match="ends early at byte 1"):
        decode(b"B\x00")
    with pytest.raises(DecodeError, match="unknown pgoutput column kind 'q'"):
        decode(b"I\x00\x00\x00\x01N\x00\x01q")
    with pytest.raises(DecodeError, match="no Relation message"):
        pgoutput.Relations().get(5)


def test_lsns_read_and_write_as_postgresql_does(database: Database) -> None:
    [(text, number)] = database.sql(
        "SELECT pg_current_wal_lsn()::text, pg_current_wal_lsn() - '0/0'::pg_lsn"
    )
    assert parse_lsn(str(text)) == int(number)  # type: ignore[call-overload]
    assert lsn_text(int(number)) == text  # type: ignore[call-overload]
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    for bad in ("", "16", "16/", "/1", "G/1", "1/2/3", "123456789/1"):
        with pytest.raises(ValueError, match="is not an LSN"):
            parse_lsn(bad)

