"""Writes the scanner's rows: plain SQL, and on a thread of its own while the scanner reads on.

The ORM's bulk_create and bulk_update prepare every value of every row in Python, and took ten times
longer than the walk itself on a 10,000-model library. Here each batch of new rows is one INSERT with
all its values bound, which the database driver runs in one call with the GIL released: a writer
thread then inserts one batch on the other core while the scanner reads the next. (executemany steps
once per row, handing the GIL back and forth at every row, and was slower in a thread than in the
scanning thread.)
"""

from __future__ import annotations

import functools
import operator
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from django.db import connection, connections, models, transaction

from models_app.headers import MetadataJSON
from models_app.models import LibraryVersion, ModelFile

Row = dict[str, Any]
Update = tuple[int, Row]  # a row's id and the fields to set


class Writer(Protocol):
    def write(self, inserts: list[Row], *updates: list[Update]) -> None: ...

    def close(self) -> None: ...


def _json_param(adapt: Callable[[Any, Any], Any], value: Any) -> Any:
    # Metadata arrives as the JSON text found in the file: both SQLite and PostgreSQL take it as is,
    # and so they take an empty list, the commonest value of the other JSON fields.
    if type(value) is MetadataJSON:
        return str(value)
    return "[]" if value == [] else adapt(value, None)


def _utc_datetime_param(adapt: Callable[[Any], Any], value: datetime) -> Any:
    # The scanner's dates are in UTC, as SQLite stores them: its adapter would only take the zone off,
    # through three calls a date.
    if value.tzinfo is UTC:
        return str(value.replace(tzinfo=None))
    return adapt(value)


def _values_of(names: list[str]) -> Callable[[Row], tuple[Any, ...]]:
    """A function giving a row's values of `names` as a tuple, for any number of names."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    return lambda row: tuple(row[name] for name in names)


class RowWriter:
    """Writes batches of new and changed ModelFile rows, each batch in one transaction."""

    def __init__(self) -> None:
        ops = connection.ops
        self.table = ops.quote_name(ModelFile._meta.db_table)
        self.max_params = connection.features.max_query_params or 65_535
        # Django's SQLite cursor rewrites each %s of a statement into the driver's ?, which took longer
        # than binding the values: the inserts go to the driver's own connection, written with ?.
        self.on_sqlite = connection.vendor == "sqlite"
        self.columns: dict[str, str] = {}
        self.adapters: dict[str, Callable[[Any], Any] | None] = {}
        stores_utc = self.on_sqlite and connection.timezone is UTC
        for model_field in ModelFile._meta.concrete_fields:
            if model_field.primary_key:
                continue
            assert model_field.column is not None  # a concrete field always has one
            self.columns[model_field.name] = ops.quote_name(model_field.column)
            if isinstance(model_field, models.JSONField):
                self.adapters[model_field.name] = functools.partial(_json_param, ops.adapt_json_value)
            elif isinstance(model_field, models.DateTimeField):
                adapt = ops.adapt_datetimefield_value
                self.adapters[model_field.name] = (
                    functools.partial(_utc_datetime_param, adapt) if stores_utc else adapt
                )
            else:
                self.adapters[model_field.name] = None

    def _layout(self, names: list[str]) -> tuple[list[str], Callable[[Row], list[Any]]]:
        """The fields `names` in the order their parameters come, and the function giving a row's
        parameters. The writer thread holds the GIL for this, so it is kept short: the fields the
        driver takes as they are come first, all in one call, then the few JSON and date fields."""
        plain = [name for name in names if self.adapters[name] is None]
        adapted = [(name, adapt) for name in names if (adapt := self.adapters[name]) is not None]
        pick = _values_of(plain)

        def to_params(row: Row) -> list[Any]:
            params = list(pick(row))
            params += [adapt(row[name]) for name, adapt in adapted]
            return params

        return plain + [name for name, _ in adapted], to_params

    def write(self, inserts: list[Row], *updates: list[Update]) -> None:
        with transaction.atomic():
            # First: two writers then queue on the version row before either touches a model row,
            # where the other order could leave each waiting for the other on PostgreSQL.
            LibraryVersion.renew()
            with connection.cursor() as cursor:
                run = connection.connection.execute if self.on_sqlite else cursor.execute
                for sql, params in self._inserts(inserts):
                    run(sql, params)
                for sql, many in self._updates(*updates):
                    cursor.executemany(sql, many)

    def close(self) -> None:
        pass

    def _inserts(self, rows: list[Row]) -> list[tuple[str, list[Any]]]:
        """INSERT statements of as many rows each as the database takes parameters for."""
        if not rows:
            return []
        names, to_params = self._layout(list(rows[0]))
        per_statement = max(1, self.max_params // len(names))
        head = f"INSERT INTO {self.table} ({', '.join(self.columns[n] for n in names)}) VALUES "
        values = f"({', '.join(['?' if self.on_sqlite else '%s'] * len(names))})"
        statements = []
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                params += to_params(row)
            # A model read on its own meanwhile (a download that ended during the scan) already has its row.
            statements.append((head + ", ".join([values] * len(chunk)) + " ON CONFLICT DO NOTHING", params))
        return statements

    def _updates(self, *updates: list[Update]) -> list[tuple[str, list[list[Any]]]]:
        """An UPDATE statement and its parameter lists for each list of changed rows: a rescan changes
        few rows, so these are not worth merging."""
        statements = []
        for rows in updates:
            if rows:
                names, to_params = self._layout(list(rows[0][1]))
                assignments = ", ".join(f"{self.columns[n]} = %s" for n in names)
                sql = f"UPDATE {self.table} SET {assignments} WHERE id = %s"
                statements.append((sql, [[*to_params(row), pk] for pk, row in rows]))
        return statements


_DONE = None


class WriterThread:
    """Runs a RowWriter on a thread with its own database connection, a batch or two behind the
    caller. An error in the thread is raised in the caller at its next write or at close; close waits
    until every batch is written."""

    def __init__(self, depth: int = 2) -> None:
        self._batches: queue.Queue[tuple[list[Row], tuple[list[Update], ...]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scan-row-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        writer: RowWriter | None = None
        try:
            writer = RowWriter()
        except BaseException as exc:  # raised in the caller
            self._error = exc
        # After an error the queue is still drained, so the caller never waits on a full one.
        while (batch := self._batches.get()) is not _DONE:
            if writer is not None and self._error is None:
                try:
                    writer.write(batch[0], *batch[1])
                except BaseException as exc:
                    self._error = exc
        connections.close_all()  # this thread's own connections: Django keeps one per thread

    def write(self, inserts: list[Row], *updates: list[Update]) -> None:
        if self._error is not None:
            raise self._error
        self._batches.put((inserts, updates))

    def close(self) -> None:
        if self._thread.is_alive():
            self._batches.put(_DONE)
            self._thread.join()
        if self._error is not None:
            raise self._error


def writer_for_scan() -> Writer:
    """A writer thread, unless the caller is inside a transaction: the rows must then be written in
    that transaction, on the caller's own connection (and SQLite lets one connection write at a time)."""
    return RowWriter() if connection.in_atomic_block else WriterThread()
