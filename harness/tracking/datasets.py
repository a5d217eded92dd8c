"""A trial's data splits as MLflow dataset inputs (``mlflow.data``): name, source, digest,
profile (size, shape, classes) and schema, each with its context (train, val, test), and which
path its images took.  Searchable: ``datasets.digest = '…'`` in ``search_runs``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.data.folders import PROTOCOL
from harness.tracking.provenance import DATA_PATH, DATA_PROTOCOL

if TYPE_CHECKING:
    from harness.data.lineage import SplitRecord


def dataset_input(record: SplitRecord):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    tensor = {"features": [{"name": "image", "type": "tensor", "tensor-spec": {
                  "dtype": "uint8", "shape": [-1, *record.image_shape]}}],
              "targets": [{"name": "label", "type": "tensor", "tensor-spec": {
                  "dtype": "int64", "shape": [-1]}}]}
    return DatasetInput(Dataset(
        name=record.name, digest=record.digest, source_type="local",
        source=json.dumps({"uri": record.source}),
        schema=json.dumps({"mlflow_tensorspec": {k: json.dumps(v) for k, v in tensor.items()}}),
        profile=json.dumps(record.profile()),
    ), tags=[InputTag("mlflow.data.context", record.context)])


def log_datasets(client, run_id: str, lineage: Sequence[SplitRecord]) -> None:
    """Each split of ``lineage`` as an input of ``run_id``, and the tags saying which path
    the training images took (held in memory, or read from files by workers) and the
    protocol both paths follow."""
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    if lineage:
        client.log_batch(run_id, tags=[RunTag(DATA_PATH, lineage[0].path),
                                       RunTag(DATA_PROTOCOL, str(PROTOCOL))])
    inputs = [dataset_input(record) for record in lineage]
    # Trials starting together insert the same new dataset at once; the store's unique key
    # refuses the second insert, which then finds the dataset there on a retry.
    for attempt in range(3):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException:
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
