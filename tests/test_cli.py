"""The command line: exit codes and one-line errors, with real stores in temp dirs."""

from __future__ import annotations

import json
import uuid
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.config import study_from_mapping
from harness.tracking import MlflowTracker
from harness_testing import free_port, serving

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_dry_run_prints_the_trial_table_and_records_nothing(tiny_study, write_study, tmp_path):
    tiny_study["seeds"] = [0, 1]
    path = write_study(tiny_study)
    store = tmp_path / "store"
    result = invoke("run", str(path), "--dry-run", "--tracking-uri", f"sqlite:///{store}/mlflow.db")
    assert result.exit_code == 0, result.output
    assert "tiny: 4 trials" in result.stdout
    assert result.stdout.count("│ se ") == 2 and result.stdout.count("│ none ") == 2
    from harness.config import load_study
    from harness.design.grid import expand

    for spec in expand(load_study(path)):
        assert spec.trial_key in result.stdout
    assert not store.exists()


def test_dry_run_validates_every_bundled_study(tmp_path):
    # The dry run checks that a study's own files are there (HARNESS_DATA is tmp_path/data,
    # empty): a study that may not download its data is refused for that alone, and the
    # image-folder study's archive stands in as an empty file (nothing reads it).
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar10-jpg.tar.gz").write_bytes(b"")
    for path in sorted(Path("studies").glob("*.yaml")):
        result = invoke("run", str(path), "--dry-run")
        if "download: false" in path.read_text():
            assert result.exit_code == 2 and "and data.download is false" in result.stderr, \
                (path, result.output)
            continue
        assert result.exit_code == 0, (path, result.output)


def test_run_then_run_again_runs_nothing(tiny_study, write_study, tracking_uri):
    path = write_study(tiny_study)
    first = invoke("run", str(path), "--tracking-uri", tracking_uri, "--device", "cpu")
    assert first.exit_code == 0, first.output
    assert "2 finished, 0 failed, 0 skipped" in first.stdout
    second = invoke("run", str(path), "--tracking-uri", tracking_uri, "--device", "cpu")
    assert second.exit_code == 0, second.output
    assert "all 2 trials already finished; nothing to run" in second.stdout
    assert "0 finished, 0 failed, 2 skipped" in second.stdout


def test_set_overrides_reach_the_trials(tiny_study, write_study, tracking_uri):
    path = write_study(tiny_study)
    result = invoke("run", str(path), "--tracking-uri", tracking_uri, "--device", "cpu",
                    "--set", "train.epochs=2", "--set", "grid.model.attention=[none]")
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.attention"] == "none"


def test_a_failed_trial_exits_with_1(tiny_study, write_study, tracking_uri):
    tiny_study["grid"] = {"train.batch_size": [1, 128]}
    result = invoke("run", str(write_study(tiny_study)), "--tracking-uri", tracking_uri,
                    "--device", "cpu")
    assert result.exit_code == 1, result.output
    assert "1 finished, 1 failed" in result.stdout


BAD_STUDIES = {
    "unknown key": (lambda s: s["base"]["train"].update(epoch=3),
                    ["base.train.epoch: unknown key; did you mean base.train.epochs? valid in base.train: epochs"]),
    "wrong type": (lambda s: s["base"]["optim"].update(lr="fast"),
                   ["base.optim.lr: must be a valid number", "'fast'"]),
    "unknown model": (lambda s: s["base"]["model"].update(arch="resnet101"),
                      ["base.model.arch: unknown architecture 'resnet101'; valid: resnet18"]),
    "unknown attention level": (lambda s: s["grid"].update({"model.attention": ["se", "sa"]}),
                                ["grid.model.attention[1]", "unknown attention 'sa'; valid: "]),
    "unknown dataset": (lambda s: s["base"]["data"].update(dataset="svhn"),
                        ["base.data.dataset: unknown dataset 'svhn'; valid: cifar10, cifar100, digits"]),
    "unknown preset": (lambda s: s["base"].update(augment={"preset": "extreme"}),
                       ["base.augment.preset: unknown augmentation preset 'extreme'; valid: none, resized_crop,"
                        " resized_crop_strong, standard, strong"]),
    "unknown optimizer": (lambda s: s["base"]["optim"].update(name="rmsprop"),
                          ["base.optim.name: unknown optimizer 'rmsprop'; valid: adam, adamw, sgd"]),
    "empty grid": (lambda s: s.update(grid={}), ["grid: is empty"]),
    "empty axis": (lambda s: s.update(grid={"model.dropout": []}), ["grid.model.dropout: no levels"]),
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_files_exit_2_with_one_line_and_record_nothing(case, tiny_study, write_study, tmp_path):
    mutate, fragments = BAD_STUDIES[case]
    mutate(tiny_study)
    path = write_study(tiny_study)
    store = tmp_path / "store"
    result = invoke("run", str(path), "--tracking-uri", f"sqlite:///{store}/mlflow.db")
    assert_one_line_error(result, str(path), *fragments)
    assert not store.exists()


def test_a_duplicate_axis_exits_2(write_study, tmp_path):
    path = write_study(
        "name: dup\ngrid:\n  model.dropout: [0.0, 0.3]\n  model.dropout: [0.5]\n"
    )
    result = invoke("run", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/s/mlflow.db")
    assert_one_line_error(result, "line 4: duplicate key 'model.dropout'")
    assert not (tmp_path / "s").exists()


def test_a_set_on_a_missing_key_exits_2(tiny_study, write_study, tmp_path):
    result = invoke("run", str(write_study(tiny_study)), "--set", "model.depth=50",
                    "--tracking-uri", f"sqlite:///{tmp_path}/s/mlflow.db")
    assert_one_line_error(result, "--set model.depth: no key 'depth' in base.model; valid: arch")
    assert not (tmp_path / "s").exists()


def test_a_missing_study_file_exits_2(tmp_path):
    assert_one_line_error(invoke("run", str(tmp_path / "nope.yaml")), "study file not found")


def test_a_missing_dataset_exits_2_naming_the_file_and_where_to_put_it(tiny_study, write_study, tmp_path):
    tiny_study["base"]["data"] = {"dataset": "cifar10", "download": False}
    store, root = tmp_path / "store", tmp_path / "datasets"
    result = invoke("run", str(write_study(tiny_study)), "--data-root", str(root),
                    "--tracking-uri", f"sqlite:///{store}/mlflow.db")
    assert_one_line_error(result, "cifar10", "cifar-10-batches-py", str(root),
                          "cifar-10-python.tar.gz")
    assert not store.exists()


def test_an_unwritable_store_exits_2(tiny_study, write_study, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = invoke("run", str(write_study(tiny_study)),
                    "--tracking-uri", f"sqlite:///{blocker}/store/mlflow.db")
    assert_one_line_error(result, "not writable")


def test_an_unreachable_tracking_server_exits_2(tiny_study, write_study):
    result = invoke("run", str(write_study(tiny_study)), "--tracking-uri", "http://127.0.0.1:9")
    assert_one_line_error(result, "tracking server http://127.0.0.1:9 is not reachable")


def test_an_unknown_device_exits_2(tiny_study, write_study, tmp_path):
    result = invoke("run", str(write_study(tiny_study)), "--device", "tpu",
                    "--tracking-uri", f"sqlite:///{tmp_path}/s/mlflow.db")
    assert_one_line_error(result, "--device 'tpu'")
    assert not (tmp_path / "s").exists()


def test_ui_without_a_store_exits_2(tmp_path):
    result = invoke("ui", "--tracking-uri", f"sqlite:///{tmp_path}/none/mlflow.db")
    assert_one_line_error(result, "no tracking store at")


def test_ui_serves_the_mlflow_ui_on_localhost(tiny_study, tracking_uri):
    MlflowTracker(tracking_uri).open_study(study_from_mapping(tiny_study))
    port = free_port()
    harness_bin = Path(sys.executable).parent / "harness"
    cmd = [str(harness_bin), "ui", "--tracking-uri", tracking_uri, "--port", str(port)]
    with serving(cmd, port=port):
        url = (f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get-by-name"
               "?experiment_name=tiny")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert json.loads(response.read())["experiment"]["name"] == "tiny"
        # MLflow's page, opening on the model-training view where the browser has no choice.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            page = response.read().decode()
        assert page.index("localStorage.setItem('mlflow.workflowType_v1'") < page.index("<meta")
        assert "'machine_learning'" in page
    # Stopping `harness ui` stopped the server: it became the server rather than a parent.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_a_study_runs_against_a_real_tracking_server(tiny_study, write_study, mlflow_server, tmp_path):
    tiny_study["name"] = name = f"served_{uuid.uuid4().hex[:8]}"  # the server outlives this test
    result = invoke("run", str(write_study(tiny_study)), "--tracking-uri", mlflow_server,
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")
    assert sorted(r.data.params["model.attention"] for r in runs) == ["none", "se"]
    assert all(r.info.status == "FINISHED" for r in runs)
    history = client.download_artifacts(runs[0].info.run_id, "history.json", str(tmp_path))
    assert json.loads(Path(history).read_text())["epochs"] == [1]
    again = invoke("run", str(write_study(tiny_study)), "--tracking-uri", mlflow_server)
    assert "all 2 trials already finished" in again.stdout


def test_viz_regenerates_a_trials_plots_and_refuses_unknown_runs(tiny_study, write_study, tracking_uri, tmp_path):
    tiny_study["grid"] = {"model.attention": ["se"]}
    assert invoke("run", str(write_study(tiny_study)), "--tracking-uri", tracking_uri,
                  "--device", "cpu").exit_code == 0
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")
    out = tmp_path / "viz"
    result = invoke("viz", run.info.run_id, "--out", str(out), "--tracking-uri", tracking_uri)
    assert result.exit_code == 0, result.output
    assert (out / "plots" / "gradcam.png").is_file()
    assert (out / "evaluation" / "confusion_matrix.csv").is_file()
    unknown = invoke("viz", "0" * 32, "--out", str(tmp_path / "nope"), "--tracking-uri", tracking_uri)
    assert_one_line_error(unknown, "no such run")


@pytest.mark.parametrize(("url", "fragment"), [
    ("postgresql://harness:secret@127.0.0.1:9/studies", "--storage postgresql://harness:***@127.0.0.1:9/studies: cannot open"),
    ("mongodb://127.0.0.1/studies", "unsupported kind 'mongodb'; valid: sqlite:///PATH, postgresql://"),
])
def test_run_with_an_unreachable_or_unsupported_storage_exits_2_and_records_nothing(
    url, fragment, tiny_study, write_study, tmp_path
):
    result = invoke("run", str(write_study(tiny_study)), "--storage", url,
                    "--tracking-uri", f"sqlite:///{tmp_path}/store/mlflow.db")
    line = assert_one_line_error(result, fragment)
    assert "secret" not in line
    assert not (tmp_path / "store").exists()


def test_a_grid_of_millions_of_trials_is_refused_before_it_is_expanded(write_study, tmp_path):
    import time

    study = {"name": "huge", "seeds": list(range(10)),
             "grid": {f"model.{key}": values for key, values in {
                 "dropout": [i / 20 for i in range(10)], "width": [0.1 * (i + 1) for i in range(10)],
                 "se_reduction": list(range(1, 11)), "drop_path": [i / 20 for i in range(10)],
                 "widen_factor": [1.0 + i for i in range(10)],
                 "attention": ["none", "se"] * 5}.items()}
             | {"optim.lr": [10.0 ** -i for i in range(10)]}}
    path = write_study(study)
    started = time.perf_counter()
    result = invoke("run", str(path), "--dry-run")
    assert time.perf_counter() - started < 30
    line = assert_one_line_error(result, "100,000,000 trials", "--max-trials 100,000",
                                 "model.dropout (10)", "x 10 seeds")
    assert "optim.lr (10)" in line
    status = invoke("status", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}")
    assert_one_line_error(status, "100,000,000 trials")


def test_max_trials_raises_the_limit(write_study, tiny_study):
    tiny_study["seeds"] = [0, 1, 2]  # 2 levels x 3 seeds = 6 trials
    path = write_study(tiny_study)
    assert_one_line_error(invoke("run", str(path), "--dry-run", "--max-trials", "5"),
                          "6 trials", "--max-trials 5")
    result = invoke("run", str(path), "--dry-run", "--max-trials", "6")
    assert result.exit_code == 0, result.output


def test_a_folder_given_as_the_study_names_its_own_study_files(tmp_path):
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "b.yaml").write_text("name: b\n")
    (folder / "a.yaml").write_text("name: a\n")
    (tmp_path / "elsewhere.yaml").write_text("name: c\n")
    line = assert_one_line_error(invoke("run", str(folder), "--dry-run"),
                                 f"{folder} is a folder, not a study file",
                                 f"{folder / 'a.yaml'}, {folder / 'b.yaml'}")
    assert "elsewhere" not in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(invoke("run", str(empty), "--dry-run"), "holds no study files")
