"""PostgreSQL statements sent with their transaction's BEGIN or COMMIT in one round trip.

psycopg sends a transaction's BEGIN by itself before the first statement, and COMMIT by itself
after the last: two of the five round trips of a typical command. JDBC and Npgsql send BEGIN
with the first statement instead. Here, a statement that opens the transaction goes in one
libpq pipeline with the BEGIN psycopg would have sent, and a statement the caller names as the
transaction's last goes in one with the COMMIT; the server runs them as it would run them one
by one, and answers all of them at once.

A write whose answer no one reads (a projection's single-row write to its SQL view) can also
be held (`hold`) and sent with the next statement, or with the COMMIT: a projection's batch of
one event then costs one round trip, its row write, its checkpoint's move and the COMMIT
together. Whatever else runs on the connection first (a SQLAlchemy statement, a cursor's)
sends the held writes before it (`send_held`), and a rollback drops them (`drop_held`).

Only `driver.Sql` and `driver.Compiled` on psycopg 3 go this way, with psycopg's own
adaptation of values and rows and its own cache of prepared statements (a statement run often
is prepared on the server, as the cursor would do; held writes are not prepared). Everything
else (SQLAlchemy's statements, other drivers, a libpq without pipelines) keeps the driver's
usual path.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Any

try:
    from psycopg import Connection as PgConnection
    from psycopg import errors as pg_errors
    from psycopg import generators, pq
    from psycopg._encodings import conn_encoding
    from psycopg._preparing import Prepare, PrepareManager
    from psycopg._queries import PostgresQuery
    from psycopg.adapt import Transformer

    _PIPELINES = (
        pq.version() >= 140000
        and pq.__build_version__ >= 140000
        and hasattr(PrepareManager, "maintain_gen")  # psycopg 3.2 and later
        and hasattr(PgConnection, "_get_tx_start_command")
    )
except ImportError:  # psycopg 3 missing, or a release laid out otherwise: the usual path
    _PIPELINES = False

_COMMIT = b"COMMIT"
_HELD = "_projectionist_held"
"""The attribute of a psycopg connection that lists its held writes (PostgresQuery objects)."""


def usable(driver_connection: Any, *, commit: bool) -> bool:
    """Whether a statement on this psycopg connection would share a round trip: it opens the
    transaction (psycopg would send BEGIN first), or `commit` asks for the COMMIT with it."""
    if not _PIPELINES or getattr(driver_connection, "pgconn", None) is None:
        return False
    if commit or holds(driver_connection):
        return True
    return (
        not driver_connection.autocommit
        and driver_connection.pgconn.transaction_status == pq.TransactionStatus.IDLE
    )


def can_hold(driver_connection: Any) -> bool:
    """Whether writes on this connection can be held (psycopg 3 in a transaction's scope)."""
    return (
        _PIPELINES
        and getattr(driver_connection, "pgconn", None) is not None
        and not driver_connection.autocommit
    )


def execute(
    driver_connection: Any, sql: str, params: Sequence[Any], *, commit: bool
) -> tuple[list[tuple[Any, ...]] | None, int]:
    """Runs one statement (psycopg's `%s`/`%b` markers), preceded by BEGIN when it opens the
    transaction and followed by COMMIT when `commit`, in one round trip; its rows (None when it
    returns none) and its row count. Raises the first error as psycopg's exception."""
    conn = driver_connection
    pgconn = conn.pgconn
    transformer = Transformer(conn)
    query = PostgresQuery(transformer)
    query.convert(sql, params)
    begins, held, sends = _opening(conn)
    # psycopg's own bookkeeping of prepared statements: prepared after a few runs as psycopg
    # would, and forgotten with the rest of them (psycopg deallocates all after a rollback).
    manager = conn._prepared
    # Not with held writes: one that fails would skip the PREPARE, which psycopg's cache
    # would then take as done.
    prep, name = (Prepare.NO, b"") if held else manager.get(query)
    if prep is Prepare.SHOULD:
        sends.append(partial(pgconn.send_prepare, name, query.query, param_types=query.types))
    if prep is Prepare.NO:
        sends.append(_send(pgconn, query))
    else:
        sends.append(
            partial(pgconn.send_query_prepared, name, query.params, param_formats=query.formats)
        )
    key = None if held else manager.maybe_add_to_cache(query, prep, name)
    if commit:
        sends.append(partial(pgconn.send_query_params, _COMMIT, None))
    with conn.lock:
        answers = conn.wait(_exchange(pgconn, sends))
        statement = answers[int(begins) + len(held) + int(prep is Prepare.SHOULD)]
        if key is not None:
            manager.validate(key, prep, name, statement)
        if getattr(manager, "_to_flush", True):  # statements to deallocate (a wait costs)
            conn.wait(manager.maintain_gen(conn))
    _raise_first_error(conn, answers, begins, held)
    [result] = statement
    count = result.command_tuples
    if result.status != pq.ExecStatus.TUPLES_OK:
        return None, -1 if count is None else count
    transformer.set_pgresult(result)
    rows = transformer.load_rows(0, result.ntuples, tuple)
    return rows, -1 if count is None else count


def hold(driver_connection: Any, sql: str, params: Sequence[Any]) -> None:
    """Keeps a write (its rows and its count unread) to send with the next statement run on
    the connection, or with its COMMIT (`usable` tells where this may be used)."""
    query = PostgresQuery(Transformer(driver_connection))
    query.convert(sql, params)
    held: list[Any] | None = getattr(driver_connection, _HELD, None)
    if held is None:
        setattr(driver_connection, _HELD, [query])
    else:
        held.append(query)


def send_held(driver_connection: Any) -> None:
    """Sends the held writes, if any (with the BEGIN, if they open the transaction) in one
    round trip. Raises the first error as psycopg's exception."""
    conn = driver_connection
    if not holds(conn):
        return
    begins, held, sends = _opening(conn)
    with conn.lock:
        answers = conn.wait(_exchange(conn.pgconn, sends))
    _raise_first_error(conn, answers, begins, held)


def holds(driver_connection: Any) -> bool:
    """Whether writes are held on this connection."""
    return bool(getattr(driver_connection, _HELD, None))


def drop_held(driver_connection: Any) -> None:
    """Forgets the held writes: their transaction rolled back."""
    _take_held(driver_connection)


def _take_held(conn: Any) -> list[Any]:
    held: list[Any] | None = getattr(conn, _HELD, None)
    if not held:
        return []
    setattr(conn, _HELD, None)
    return held


def _opening(conn: Any) -> tuple[bool, list[Any], list[Callable[[], None]]]:
    """What goes first in a pipeline: the BEGIN psycopg would send (whether it does), then the
    held writes (taken off the connection); and the sends of both."""
    pgconn = conn.pgconn
    sends: list[Callable[[], None]] = []
    begins = not conn.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE
    if begins:
        sends.append(partial(pgconn.send_query_params, conn._get_tx_start_command(), None))
    held = _take_held(conn)
    sends.extend(_send(pgconn, query) for query in held)
    return begins, held, sends


def _send(pgconn: Any, query: Any) -> Callable[[], None]:
    """The send of a converted statement, unprepared."""
    return partial(
        pgconn.send_query_params,
        query.query,
        query.params,
        param_types=query.types,
        param_formats=query.formats,
    )


def _raise_first_error(conn: Any, answers: list[Any], begins: bool, held: list[Any]) -> None:
    """The first failed statement's error; one that was held names its own SQL in
    `projectionist_sql` (its error surfaced with a later statement)."""
    for index, results in enumerate(answers):
        for result in results:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                error = pg_errors.error_from_result(result, encoding=conn_encoding(conn))
                position = index - int(begins)
                if 0 <= position < len(held):
                    error.projectionist_sql = held[position].query.decode()  # type: ignore[attr-defined]
                raise error


def _exchange(pgconn: Any, sends: Sequence[Callable[[], None]]) -> Generator[Any, Any, list[Any]]:
    """Sends the statements in a pipeline ended by one sync; each one's results."""
    pgconn.enter_pipeline_mode()
    try:
        for send in sends:
            send()
        pgconn.pipeline_sync()
        yield from generators.send(pgconn)
        answers: list[Any] = []
        while True:
            results = yield from generators.fetch_many(pgconn)
            if results and results[-1].status == pq.ExecStatus.PIPELINE_SYNC:
                return answers
            answers.append(results)
    finally:
        _leave_pipeline(pgconn)


def _leave_pipeline(pgconn: Any) -> None:
    if pgconn.status == pq.ConnStatus.BAD:
        return
    try:
        pgconn.exit_pipeline_mode()
    except pg_errors.OperationalError:
        # Results left unread (the exchange was interrupted): a connection that cannot leave
        # the pipeline is of no further use; closed, its pool replaces it.
        pgconn.finish()
