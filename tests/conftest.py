"""Shared fixtures: tiny studies on the bundled digits data and real MLflow stores in temp dirs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

TINY = {
    "name": "tiny",
    "description": "a tiny digits study for tests",
    "base": {
        "data": {"dataset": "digits", "val_size": 0.2},
        "model": {"arch": "resnet18", "stem": "cifar", "width": 0.125, "se_reduction": 2},
        "optim": {"name": "adamw", "lr": 3.0e-3},
        "train": {"epochs": 1, "batch_size": 128},
    },
    "grid": {"model.attention": ["se", "none"]},
    "seeds": [0],
}


@pytest.fixture
def tiny_study() -> dict:
    return copy.deepcopy(TINY)


@pytest.fixture
def write_study(tmp_path: Path):
    def write(data: dict | str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    # No test may fall back on a developer's own store or data.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
