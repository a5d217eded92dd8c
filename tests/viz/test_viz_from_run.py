"""regenerate() against a real trial in a temporary MLflow store, and every way a run can be
unfit for it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from harness.config import TrialConfig, study_from_mapping
from harness.data import load_dataset
from harness.errors import HarnessError
from harness.study.runner import run_study
from harness.study.options import RunOptions
from harness.tracking import MlflowTracker
from harness.viz.from_run import model_from_checkpoint, regenerate

TINY_TRIAL = {
    "name": "viz",
    "base": {
        "data": {"dataset": "digits", "val_size": 0.2},
        "model": {"arch": "resnet18", "stem": "cifar", "width": 0.125, "attention": "se",
                  "se_reduction": 2},
        "optim": {"name": "adamw", "lr": 3.0e-3},
        "train": {"epochs": 1, "batch_size": 128},
    },
    "seeds": [0],
}


class Store:
    """A real store holding one finished digits trial, and a way to add hand-made runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
        self.data_root = root / "data"
        run_study(study_from_mapping(TINY_TRIAL), tracker=MlflowTracker(self.uri),
                  options=RunOptions(device="cpu", data_root=self.data_root))
        self.client = MlflowClient(self.uri)
        self.experiment_id = self.client.get_experiment_by_name("viz").experiment_id
        (self.trial,) = self.runs("trial")
        (self.study,) = self.runs("study")
        files = root / "trial-files"
        self.config = Path(self.client.download_artifacts(self.trial, "config.yaml", str(files)))
        self.history = Path(self.client.download_artifacts(self.trial, "history.json", str(files)))
        self.checkpoint = Path(self.client.download_artifacts(self.trial, "checkpoints/best.pt",
                                                              str(files)))

    def runs(self, kind: str) -> list[str]:
        found = self.client.search_runs([self.experiment_id],
                                        filter_string=f"tags.`harness.kind` = '{kind}'")
        return [r.info.run_id for r in found]

    def hand_made_trial(self, files: dict[str, Path | bytes | str], tmp: Path) -> str:
        """A trial-tagged run holding exactly ``files`` (artifact path → file or content)."""
        run_id = self.client.create_run(self.experiment_id, tags={"harness.kind": "trial"}).info.run_id
        for name, content in files.items():
            folder, _, base = name.rpartition("/")
            local = content if isinstance(content, Path) else tmp / run_id / base
            if not isinstance(content, Path):
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(content if isinstance(content, bytes) else content.encode())
            if local.name != base:
                renamed = tmp / run_id / base
                renamed.parent.mkdir(parents=True, exist_ok=True)
                renamed.write_bytes(local.read_bytes())
                local = renamed
            self.client.log_artifact(run_id, str(local), folder or None)
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("viz-store"))


def viz(store: Store, run_id: str, out: Path) -> list[Path]:
    return regenerate(run_id, tracking_uri=store.uri, out_dir=out, data_root=store.data_root)


def one_line_error(store: Store, run_id: str, out: Path) -> str:
    with pytest.raises(HarnessError) as info:
        viz(store, run_id, out)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert not out.exists() or not any(out.rglob("*.png")), "nothing is drawn for a bad run"
    return message


def test_regenerate_reproduces_the_trials_evaluation_from_its_best_checkpoint(store, tmp_path):
    written = viz(store, store.trial, tmp_path / "viz")
    assert {p.relative_to(tmp_path / "viz").as_posix() for p in written} == {
        "plots/curves.png", "plots/confusion_matrix.png", "plots/per_class_metrics.png",
        "plots/reliability.png", "plots/topk.png", "plots/gradcam.png", "plots/predictions.png",
        "evaluation/confusion_matrix.csv", "evaluation/per_class_metrics.csv",
        "evaluation/calibration_bins.json", "evaluation/topk.json", "evaluation/gradcam.json",
    }

    # The numbers are the trial's own test metrics, as the trial logged them.
    logged = json.loads(Path(store.client.download_artifacts(
        store.trial, "test_metrics.json", str(tmp_path / "logged"))).read_text())
    calibration = json.loads((tmp_path / "viz/evaluation/calibration_bins.json").read_text())
    topk = json.loads((tmp_path / "viz/evaluation/topk.json").read_text())
    assert calibration["ece"] == pytest.approx(logged["test_ece"], abs=1e-6)
    assert topk["top1"] == pytest.approx(logged["test_acc"], abs=1e-6)
    assert topk["top5"] == pytest.approx(logged["test_top5"], abs=1e-6)
    rows = (tmp_path / "viz/evaluation/confusion_matrix.csv").read_text().splitlines()[1:]
    assert [[int(v) for v in row.split(",")[1:]] for row in rows] == logged["confusion"]

    per_class = (tmp_path / "viz/evaluation/per_class_metrics.csv").read_text().splitlines()[1:]
    recalls = {row.split(",")[0]: float(row.split(",")[2]) for row in per_class}
    assert recalls == pytest.approx({k: (0.0 if v != v else v)
                                     for k, v in logged["per_class_acc"].items()})


def test_an_unknown_run_id_is_one_line(store, tmp_path):
    message = one_line_error(store, "0123456789abcdef0123456789abcdef", tmp_path / "out")
    assert message == f"run 0123456789abcdef0123456789abcdef: no such run in {store.uri}"


def test_a_study_run_is_not_a_trial(store, tmp_path):
    message = one_line_error(store, store.study, tmp_path / "out")
    assert "a harness study run, not a trial" in message


def test_a_run_without_a_checkpoint_is_one_line(store, tmp_path):
    run_id = store.hand_made_trial({"config.yaml": store.config, "history.json": store.history},
                                   tmp_path)
    message = one_line_error(store, run_id, tmp_path / "out")
    assert message.startswith(f"run {run_id}: no checkpoint (checkpoints/best.pt)")


def test_a_corrupted_checkpoint_is_one_line(store, tmp_path):
    run_id = store.hand_made_trial({"config.yaml": store.config, "history.json": store.history,
                                    "checkpoints/best.pt": b"\x00garbage, not a checkpoint" * 10},
                                   tmp_path)
    message = one_line_error(store, run_id, tmp_path / "out")
    assert message.startswith(f"run {run_id}: checkpoints/best.pt is corrupt")


def test_a_truncated_checkpoint_is_one_line(store, tmp_path):
    truncated = store.checkpoint.read_bytes()[: store.checkpoint.stat().st_size // 2]
    run_id = store.hand_made_trial({"config.yaml": store.config, "history.json": store.history,
                                    "checkpoints/best.pt": truncated}, tmp_path)
    assert "is corrupt" in one_line_error(store, run_id, tmp_path / "out")


class _Payload:
    """Unpickling this would create a directory: what a malicious checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_checkpoint_that_is_not_weights_only_is_refused_without_running_it(store, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil" / "best.pt"
    evil.parent.mkdir()
    torch.save({"model": _Payload(marker)}, evil)
    run_id = store.hand_made_trial({"config.yaml": store.config, "history.json": store.history,
                                    "checkpoints/best.pt": evil}, tmp_path)
    message = one_line_error(store, run_id, tmp_path / "out")
    assert "not a weights-only checkpoint" in message
    assert not marker.exists()


def test_a_checkpoint_that_does_not_fit_the_configs_model_is_one_line(store, tmp_path):
    raw = yaml.safe_load(store.config.read_text())
    raw["model"]["width"] = 0.25
    raw["model"]["attention"] = "none"
    run_id = store.hand_made_trial({"config.yaml": yaml.safe_dump(raw),
                                    "history.json": store.history,
                                    "checkpoints/best.pt": store.checkpoint}, tmp_path)
    message = one_line_error(store, run_id, tmp_path / "out")
    assert message.startswith(f"run {run_id}: checkpoints/best.pt does not fit the model")
    assert "shape mismatches, e.g. conv1.weight: checkpoint [8, 1, 3, 3], model [16, 1, 3, 3]" in message
    assert "unexpected tensors, e.g. layer1.0.attn." in message


def test_a_config_that_no_longer_validates_names_the_key(store, tmp_path):
    raw = yaml.safe_load(store.config.read_text())
    raw["model"]["attention"] = "cbam-v9"
    run_id = store.hand_made_trial({"config.yaml": yaml.safe_dump(raw),
                                    "history.json": store.history,
                                    "checkpoints/best.pt": store.checkpoint}, tmp_path)
    message = one_line_error(store, run_id, tmp_path / "out")
    assert message.startswith(f"run {run_id}: config.yaml: model.attention: unknown attention")


def test_a_store_that_does_not_exist_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    with pytest.raises(HarnessError, match="no such database"):
        regenerate("abc", tracking_uri=uri, out_dir=tmp_path / "out", data_root=tmp_path)
    assert not (tmp_path / "nowhere").exists()


def test_model_from_checkpoint_loads_a_local_best_checkpoint_as_the_runner_has_it(store, tmp_path):
    raw = yaml.safe_load(store.config.read_text())
    config = TrialConfig.model_validate({k: v for k, v in raw.items()
                                         if k not in ("study", "seed", "factors")})
    info = load_dataset(config.data, root=store.data_root).info
    model = model_from_checkpoint(store.checkpoint, config, info)
    saved = torch.load(store.checkpoint, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())

    garbage = tmp_path / "best.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(HarnessError, match=f"^{garbage} is corrupt"):
        model_from_checkpoint(garbage, config, info)
