"""Document 002's Tiny ImageNet study and an image-folder study, run by ``harness run`` end to end
on files generated in the real on-disk layouts, into a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from mlflow import MlflowClient
from typer.testing import CliRunner

from datafiles import image_folder, tiny_imagenet, zip_folder
from harness.cli import app

runner = CliRunner()

# Document 002's recipe at a size a CPU test can afford: 32 px crops, one epoch, no workers.
SMALL = ["--set", "data.image_size=32", "--set", "data.workers=0", "--set", "data.val_size=3",
         "--set", "train.epochs=1", "--set", "train.batch_size=4",
         "--set", "train.eval_batch_size=8", "--device", "cpu"]


def _trials(tracking_uri: str, study: str):
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    return client, client.search_runs(
        [experiment.experiment_id], filter_string="tags.`harness.kind` = 'trial'")


def test_the_tiny_imagenet_study_fine_tunes_imagenet_weights_from_the_official_zip(
        tmp_path, tracking_uri, monkeypatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    zip_folder(tiny_imagenet(tmp_path / "staging"), data / "tiny-imagenet-200.zip")
    # torchvision's ResNet-50 in the torch hub cache under ResNet50_Weights.DEFAULT's file
    # name, where `model.weights: imagenet` looks; random, but in torchvision's format.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    weights = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(weights, hub / Path(torchvision.models.ResNet50_Weights.DEFAULT.url).name)

    # One frozen epoch: the backbone must come out exactly as the weights file has it.
    result = runner.invoke(app, [
        "run", "studies/tiny_imagenet_finetune.yaml", "--data-root", str(data),
        "--tracking-uri", tracking_uri, *SMALL, "--set", "train.freeze_backbone_epochs=1"])
    assert result.exit_code == 0, result.output

    client, (run,) = _trials(tracking_uri, "tiny_imagenet_finetune")
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    assert params["data.dataset"] == "tiny_imagenet" and params["model.arch"] == "resnet50"
    assert params["schedule.step_size"] == "7" and params["optim.lr"] == "0.001"
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["n_params"] > 2e7
    assert {"test_class_acc.goldfish", "test_class_acc.bullfrog"} <= set(metrics)
    # The evaluation plots were drawn from the decoded test images.
    root = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "plots_error.txt" not in root
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/predictions.png", "plots/gradcam.png"} <= plots
    best = torch.load(client.download_artifacts(run.info.run_id, "checkpoints/best.pt",
                                                str(tmp_path)), weights_only=True)["model"]
    for key in ("conv1.weight", "layer3.4.conv2.weight", "layer4.2.bn3.running_var"):
        assert torch.equal(best[key], weights[key]), key
    assert best["fc.weight"].shape == (3, 2048)  # a new classifier for Tiny ImageNet's classes


def test_an_image_folder_study_runs_a_grid_over_presets(tmp_path, tracking_uri, write_study):
    image_folder(tmp_path / "data" / "pets", n_per_class=8, size=20)
    study = {
        "name": "pets",
        "base": {
            "data": {"dataset": "imagefolder", "path": "pets", "val_size": 2, "test_size": 4,
                     "workers": 1},
            "model": {"arch": "resnet18", "stem": "imagenet", "width": 0.125},
            "train": {"epochs": 1, "batch_size": 4, "plots": False},
        },
        "grid": {"augment.preset": ["none", "standard", "strong"]},
    }
    result = runner.invoke(app, ["run", str(write_study(study)), "--data-root",
                                 str(tmp_path / "data"), "--tracking-uri", tracking_uri,
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    _, runs = _trials(tracking_uri, "pets")
    assert sorted(r.data.params["augment.preset"] for r in runs) == ["none", "standard", "strong"]
    assert all(r.info.status == "FINISHED" and "test_acc" in r.data.metrics for r in runs)
    # data.in_memory: auto, 20 px images of one size: decoded and held in memory.
    assert {r.data.tags["harness.data_path"] for r in runs} == {"memory"}
    # The dry run counts the finished trials by the keys the run gave them: a relative
    # data.path is the folder under this data root, and under another root another trial.
    path = write_study(study)
    for root, counted in ((tmp_path / "data", "3 finished, 0 to run"),
                          (tmp_path / "elsewhere", "0 finished, 3 to run")):
        if not (root / "pets").exists():
            image_folder(root / "pets", n_per_class=8, size=20)
        result = runner.invoke(app, ["run", str(path), "--dry-run", "--data-root", str(root),
                                     "--tracking-uri", tracking_uri, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert f"trials:    {counted}" in result.output, result.output


def test_a_corrupt_tiny_imagenet_zip_exits_2_before_anything_is_recorded(tmp_path,
                                                                          tracking_uri) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-imagenet-200.zip").write_bytes(b"PK\x03\x04 not really a zip")
    result = runner.invoke(app, ["run", "studies/tiny_imagenet_finetune.yaml", "--data-root",
                                 str(data), "--tracking-uri", tracking_uri, *SMALL])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert "tiny-imagenet-200.zip is not a readable archive" in line
    assert not (tmp_path / "store").exists()  # nothing recorded
    assert sorted(p.name for p in data.iterdir()) == ["tiny-imagenet-200.zip"]


def test_an_image_folder_with_no_classes_exits_2(tmp_path, tracking_uri, write_study) -> None:
    (tmp_path / "data" / "pets").mkdir(parents=True)
    study = {"name": "pets", "base": {"data": {"dataset": "imagefolder", "path": "pets"}}}
    result = runner.invoke(app, ["run", str(write_study(study)), "--data-root",
                                 str(tmp_path / "data"), "--tracking-uri", tracking_uri])
    assert result.exit_code == 2, result.output
    assert "pets has no class folders with images" in result.stderr
