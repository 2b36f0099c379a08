"""The check the long-running and terminal commands make before their first query."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor


def require_migrated() -> None:
    """Stops with what to do when the database cannot be reached or lacks migrations (a fresh data dir,
    or an update whose `migrate` was not run): the command would otherwise fail at its first query,
    with a traceback, or serve pages that do."""
    connection = connections[DEFAULT_DB_ALIAS]
    name = connection.settings_dict["NAME"]
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        raise CommandError(f"The database ({name}) cannot be reached: {exc}") from None
    if pending:
        raise CommandError(
            f"The database ({name}) lacks {len(pending)} migration{'s' if len(pending) != 1 else ''}: "
            "run `python manage.py migrate` first (`make run` does both)."
        )
