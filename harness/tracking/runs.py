"""Reading a study's trial runs back from the store, one row a run: the runner's finished
trials (``MlflowTracker.finished``) and the report's frame (``harness.report.collect``) both
read them here.

Speed: ``MlflowClient.search_runs`` builds every param, tag and metric of every run as ORM
objects, 2.5 ms a run (25 s for 10,000 runs).  On a SQL store the runs, the tags harness
needs and the metrics asked for are read in a few queries through MLflow's own table models
instead (1 s for 10,000 runs; a test checks both ways read the same frame).  Any other store,
a tracking server included, goes through ``search_runs``, page by page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.tracking.layout import CELL_KEY, FACTOR_PREFIX, IDENTITY, KIND, SEED, TRIAL_KEY
from harness.tracking.provenance import DATA_PATH, DATA_PROTOCOL, PROVENANCE

if TYPE_CHECKING:
    from mlflow import MlflowClient

# A trial stopped by a pruner ends KILLED with harness.state=pruned (MLflow has no such status).
STATE_TAG, PRUNED = "harness.state", "pruned"
# Bounded by MLflow's own SEARCH_MAX_RESULTS_THRESHOLD.
PAGE = 50_000
# The tags read back for each trial run.
READ_TAGS = (TRIAL_KEY, CELL_KEY, SEED, IDENTITY, STATE_TAG, DATA_PATH, DATA_PROTOCOL,
             *PROVENANCE.values())


def read_trial_runs(client: MlflowClient, experiment_id: str, *,
                    metrics: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every active trial run of an experiment, one row each, and every metric name logged.

    Columns: ``run_id``, ``status``, ``start_time``, ``tags.<key>`` for the harness tags and
    ``metrics.<key>`` for the latest value of each metric in ``metrics`` (all when None).
    """
    found = fast(_read_sql, client, experiment_id, metrics)
    if found is None:
        found = _read_search(client, experiment_id, metrics)
    return found


def fast(read, *args):
    """A fast path's answer, or None to take MLflow's public API: the table models it reads
    are MLflow internals, and a release that changes them must cost speed, not correctness."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return read(*args)
    except (ImportError, AttributeError, SQLAlchemyError):
        return None


def _read_search(client: MlflowClient, experiment_id: str,
                 metrics: list[str] | None) -> tuple[pd.DataFrame, list[str]]:
    rows, names = [], set()
    for run in search_runs(client, [experiment_id], f"tags.`{KIND}` = 'trial'"):
        row: dict[str, Any] = {"run_id": run.info.run_id, "status": run.info.status,
                               "start_time": run.info.start_time}
        row.update({f"tags.{k}": v for k, v in run.data.tags.items() if _wanted_tag(k)})
        names.update(run.data.metrics)
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()
                    if metrics is None or k in metrics})
        rows.append(row)
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run_id", "status", "start_time"])
    return frame, sorted(names)


def _wanted_tag(key: str) -> bool:
    return key in READ_TAGS or key.startswith(FACTOR_PREFIX)


def search_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  max_results=PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sql_store(client: MlflowClient) -> Any | None:
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
    except (ImportError, AttributeError):
        return None
    return store if isinstance(store, SqlAlchemyStore) else None


def _read_sql(client: MlflowClient, experiment_id: str,
              metrics: list[str] | None) -> tuple[pd.DataFrame, list[str]] | None:
    store = sql_store(client)
    if store is None:
        return None
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlRun, SqlTag

    trial_runs = (
        sa.select(SqlRun.run_uuid)
        .join(SqlTag, SqlTag.run_uuid == SqlRun.run_uuid)
        .where(SqlRun.experiment_id == int(experiment_id), SqlRun.lifecycle_stage == "active",
               SqlTag.key == KIND, SqlTag.value == "trial")
    )
    latest = sa.select(SqlLatestMetric.run_uuid, SqlLatestMetric.key, SqlLatestMetric.value,
                       SqlLatestMetric.is_nan).where(SqlLatestMetric.run_uuid.in_(trial_runs))
    if metrics is not None:
        latest = latest.where(SqlLatestMetric.key.in_(metrics))
    with store.ManagedSessionMaker() as session:
        runs = session.execute(
            sa.select(SqlRun.run_uuid, SqlRun.status, SqlRun.start_time)
            .where(SqlRun.run_uuid.in_(trial_runs))
        ).all()
        tags = session.execute(
            sa.select(SqlTag.run_uuid, SqlTag.key, SqlTag.value)
            .where(SqlTag.run_uuid.in_(trial_runs),
                   sa.or_(SqlTag.key.in_(READ_TAGS),
                          SqlTag.key.startswith(FACTOR_PREFIX, autoescape=True)))
        ).all()
        names = session.execute(
            sa.select(SqlLatestMetric.key).distinct()
            .where(SqlLatestMetric.run_uuid.in_(trial_runs))
        ).scalars().all()
        values = session.execute(latest).all()
    frame = pd.DataFrame(runs, columns=["run_id", "status", "start_time"])
    frame = frame.join(_wide(frame["run_id"], tags, prefix="tags.", numeric=False))
    frame = frame.join(_wide(frame["run_id"], values, prefix="metrics.", numeric=True))
    return frame, sorted(names)


def _wide(run_ids: pd.Series, rows: list[Any], *, prefix: str, numeric: bool) -> pd.DataFrame:
    """``(run_id, key, value[, is_nan])`` rows as one column per key, aligned with ``run_ids``.

    By position through ``factorize``: pandas' pivot on string keys takes seconds at 10^5 rows.
    """
    if not rows:
        return pd.DataFrame(index=run_ids.index)
    columns = list(zip(*rows))
    row_of = pd.Index(run_ids).get_indexer(pd.Index(columns[0]))
    key_codes, keys = pd.factorize(pd.Index(columns[1]))
    keep = row_of >= 0
    if numeric:
        values = np.asarray(columns[2], dtype=float)
        values[np.asarray(columns[3], dtype=bool)] = np.nan  # MLflow stores NaN as a flag
        table = np.full((len(run_ids), len(keys)), np.nan)
    else:
        values = np.asarray(columns[2], dtype=object)
        table = np.full((len(run_ids), len(keys)), None, dtype=object)
    table[row_of[keep], key_codes[keep]] = values[keep]
    return pd.DataFrame(table, index=run_ids.index, columns=[prefix + k for k in keys])
