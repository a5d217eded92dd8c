"""train.compile on the CPU with the inductor backend (the GPU path's compiler, generating C++
here): training, validation, the test and backbone freezing, with a bound on how many graphs
it compiles.  No GPU has been lent to this project; this is the compiled path's check until
one is."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from harness.config import TrialConfig
from harness.data import load_dataset
from harness.engine import fit
from harness.models import build_model

# One graph per distinct (train or eval mode, frozen or not, input shape) the trial meets:
# training with the backbone frozen, training with it free, evaluation at the validation
# split's size and at the test split's.  One more for the slack of a changed guard.
MAX_GRAPHS = 6


def test_a_compiled_trial_trains_freezes_validates_and_tests_within_a_graph_bound(tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters

    base = {"data": {"dataset": "digits", "val_size": 0.2},
            "model": {"width": 0.125, "attention": "se", "se_reduction": 2}}
    data = load_dataset(TrialConfig.model_validate(base).data, root=Path("unused"))
    weights = tmp_path / "backbone.pt"
    torch.save(build_model(TrialConfig.model_validate(base).model, in_channels=1,
                           num_classes=10).state_dict(), weights)
    cfg = TrialConfig.model_validate({
        **base, "model": {**base["model"], "weights": str(weights)},
        "train": {"epochs": 2, "batch_size": 128, "eval_batch_size": 1024, "compile": True,
                  "freeze_backbone_epochs": 1, "plots": False},
    })
    torch._dynamo.reset()
    counters.clear()
    result = fit(cfg, data, seed=0, device="cpu")
    frames, stats = dict(counters["frames"]), dict(counters["stats"])
    assert frames.get("ok", 0) == frames.get("total", -1) > 0  # nothing failed to compile
    assert 0 < stats["unique_graphs"] <= MAX_GRAPHS, stats
    assert all(math.isfinite(v) for v in result.final.values())
    assert len(result.history["val_acc"]) == 2 and result.final["test_acc"] > 0.1
    torch._dynamo.reset()
