"""render_evaluation writes every plot and data file, and the data agree with the engine."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from harness.config import DataConfig, ModelConfig
from harness.data import DataBundle, DatasetInfo, TensorSplit, load_dataset
from harness.engine.metrics import classification_metrics
from harness.models import build_model
from harness.viz.evaluation import logits_on_test, render_evaluation

PLOTS = {"curves.png", "confusion_matrix.png", "per_class_metrics.png", "reliability.png",
         "topk.png", "gradcam.png", "predictions.png"}
DATA = {"confusion_matrix.csv", "per_class_metrics.csv", "calibration_bins.json", "topk.json",
        "gradcam.json"}
HISTORY = {"epochs": [1, 2, 3], "train_loss": [2.0, 1.2, 0.8], "train_acc": [0.3, 0.6, 0.8],
           "val_loss": [1.8, 1.1, 0.9], "val_acc": [0.35, 0.62, 0.75],
           "learning_rates": [0.01, 0.005, 0.001]}
CPU = torch.device("cpu")


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> DataBundle:
    return load_dataset(DataConfig(dataset="digits", val_size=0.2),
                        root=tmp_path_factory.mktemp("data"))


def digits_model(attention: str = "none") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="resnet18", stem="cifar", width=0.125, attention=attention,
                      se_reduction=2)
    return build_model(cfg, in_channels=1, num_classes=10)


@pytest.fixture(scope="module")
def rendered(digits, tmp_path_factory) -> tuple[torch.nn.Module, Path, list[Path]]:
    """One render of an (untrained) SE model on digits, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("rendered")
    model = digits_model("se")
    return model, out, render_evaluation(model, digits, HISTORY, out, device=CPU)


def test_render_evaluation_writes_every_plot_and_data_file(rendered):
    _, tmp_path, written = rendered
    assert {p.name for p in (tmp_path / "plots").iterdir()} == PLOTS
    assert {p.name for p in (tmp_path / "evaluation").iterdir()} == DATA
    assert sorted(written) == sorted([*(tmp_path / "plots").iterdir(),
                                      *(tmp_path / "evaluation").iterdir()])
    assert all(is_png(tmp_path / "plots" / name) for name in PLOTS)


def test_the_data_files_agree_with_the_engines_metrics(digits, rendered):
    model, tmp_path, _ = rendered
    logits = logits_on_test(model.eval(), digits, device=CPU)
    engine = classification_metrics(logits, digits.test.labels)
    names = digits.info.class_names
    data = tmp_path / "evaluation"

    with (data / "confusion_matrix.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", *names]
    assert [r[0] for r in rows[1:]] == names
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == engine["confusion"].tolist()

    with (data / "per_class_metrics.csv").open() as f:
        per_class = list(csv.DictReader(f))
    assert [r["class"] for r in per_class] == names
    assert [int(r["support"]) for r in per_class] == engine["confusion"].sum(dim=1).tolist()
    recalls = [float(r["recall"]) for r in per_class]
    assert recalls == pytest.approx([0.0 if a != a else a for a in engine["per_class_acc"]])

    calibration = json.loads((data / "calibration_bins.json").read_text())
    assert calibration["n_bins"] == 15 and len(calibration["bins"]) == 15
    assert calibration["n_samples"] == len(digits.test)
    assert calibration["ece"] == pytest.approx(engine["ece"], abs=1e-9)

    topk = json.loads((data / "topk.json").read_text())
    assert topk["top1"] == pytest.approx(engine["acc"]) and topk["top5"] == pytest.approx(engine["top5"])

    gradcam = json.loads((data / "gradcam.json").read_text())
    # 8×8 digits reach layer4 as 1×1, so the map comes from layer3.
    assert gradcam["stage"] == "layer3" and gradcam["feature_size"] == [2, 2]
    assert [g["test_index"] for g in gradcam["images"]] == list(range(8))
    assert [g["true"] for g in gradcam["images"]] == [names[i] for i in digits.test.labels[:8]]


def test_colour_images_a_small_test_set_and_no_history(tmp_path):
    gen = torch.Generator().manual_seed(0)
    split = TensorSplit(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=gen),
                        torch.arange(12) % 3)
    info = DatasetInfo(name="toy", num_classes=3, in_channels=3, image_size=(32, 32),
                       class_names=["cat", "dog", "a very long class name"],
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), hflip=True)
    model = build_model(ModelConfig(width=0.125), in_channels=3, num_classes=3)
    model.train()
    render_evaluation(model, DataBundle(info, split, split, split), {}, tmp_path, device=CPU,
                      n_gradcam=3)
    assert model.training, "the caller's mode is restored"
    # Without a history there are no curves to draw; everything else is there.
    assert {p.name for p in (tmp_path / "plots").iterdir()} == PLOTS - {"curves.png"}
    assert all(is_png(p) for p in (tmp_path / "plots").iterdir())
    gradcam = json.loads((tmp_path / "evaluation" / "gradcam.json").read_text())
    assert gradcam["stage"] == "layer4" and gradcam["feature_size"] == [4, 4]
    assert len(gradcam["images"]) == 3
    topk = json.loads((tmp_path / "evaluation" / "topk.json").read_text())
    assert topk["top3"] == topk["top5"] == 1.0


def test_the_plots_at_the_end_of_a_bf16_trial_show_the_logged_test_metrics(tiny_study,
                                                                           tracking_uri,
                                                                           tmp_path):
    # bf16 autocast runs on the CPU too: the plots must use the logits the metrics came from,
    # not a second, fp32 forward pass.
    import json

    from mlflow import MlflowClient

    from harness.config import study_from_mapping
    from harness.study.options import RunOptions
    from harness.study.runner import run_study
    from harness.tracking import MlflowTracker

    tiny_study["base"]["train"].update({"plots": True, "precision": "bf16"})
    tiny_study["grid"] = {"model.attention": ["none"]}
    outcome = run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
                        options=RunOptions(device="cpu"))
    client = MlflowClient(tracking_uri)
    run_id = outcome.finished[0].run_id
    metrics = client.get_run(run_id).data.metrics
    folder = tmp_path / "artifacts"
    calibration = json.loads(open(client.download_artifacts(
        run_id, "evaluation/calibration_bins.json", str(folder))).read())
    topk = json.loads(open(client.download_artifacts(run_id, "evaluation/topk.json",
                                                     str(folder))).read())
    assert calibration["ece"] == metrics["test_ece"]
    assert topk["top1"] == metrics["test_acc"] and topk["top5"] == metrics["test_top5"]
