"""PostgreSQL statements sent with their transaction's BEGIN or COMMIT in one round trip.

psycopg sends a transaction's BEGIN by itself before the first statement, and COMMIT by itself
after the last: two of the five round trips of a typical command. JDBC and Npgsql send BEGIN
with the first statement instead. Here, a statement that opens the transaction goes in one
libpq pipeline with the BEGIN psycopg would have sent, and a statement the caller names as the
transaction's last goes in one with the COMMIT; the server runs them as it would run them one
by one, and answers all of them at once.

Only `driver.Sql` on psycopg 3 goes this way, with psycopg's own adaptation of values and rows
and its own cache of prepared statements (a statement run often is prepared on the server, as
the cursor would do). Everything else (SQLAlchemy's statements, other drivers, a libpq without
pipelines) keeps the driver's usual path.
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


def usable(driver_connection: Any, *, commit: bool) -> bool:
    """Whether a statement on this psycopg connection would share a round trip: it opens the
    transaction (psycopg would send BEGIN first), or `commit` asks for the COMMIT with it."""
    if not _PIPELINES or getattr(driver_connection, "pgconn", None) is None:
        return False
    if commit:
        return True
    return (
        not driver_connection.autocommit
        and driver_connection.pgconn.transaction_status == pq.TransactionStatus.IDLE
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
    sends: list[Callable[[], None]] = []
    begins = not conn.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE
    if begins:
        sends.append(partial(pgconn.send_query_params, conn._get_tx_start_command(), None))
    # psycopg's own bookkeeping of prepared statements: prepared after a few runs as psycopg
    # would, and forgotten with the rest of them (psycopg deallocates all after a rollback).
    manager = conn._prepared
    prep, name = manager.get(query)
    if prep is Prepare.SHOULD:
        sends.append(partial(pgconn.send_prepare, name, query.query, param_types=query.types))
    if prep is Prepare.NO:
        sends.append(
            partial(
                pgconn.send_query_params,
                query.query,
                query.params,
                param_types=query.types,
                param_formats=query.formats,
            )
        )
    else:
        sends.append(
            partial(pgconn.send_query_prepared, name, query.params, param_formats=query.formats)
        )
    key = manager.maybe_add_to_cache(query, prep, name)
    if commit:
        sends.append(partial(pgconn.send_query_params, _COMMIT, None))
    with conn.lock:
        answers = conn.wait(_exchange(pgconn, sends))
        statement = answers[int(begins) + int(prep is Prepare.SHOULD)]
        if key is not None:
            manager.validate(key, prep, name, statement)
        conn.wait(manager.maintain_gen(conn))
    for results in answers:
        for result in results:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise pg_errors.error_from_result(result, encoding=conn_encoding(conn))
    [result] = statement
    count = result.command_tuples
    if result.status != pq.ExecStatus.TUPLES_OK:
        return None, -1 if count is None else count
    transformer.set_pgresult(result)
    rows = transformer.load_rows(0, result.ntuples, tuple)
    return rows, -1 if count is None else count


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
