"""What each trial records besides its config: the code version (harness.tracking.provenance)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import harness
from harness.tracking.provenance import code_version

PACKAGE = Path(harness.__file__).resolve().parent


def test_a_checkout_records_its_commit():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE, capture_output=True,
                          text=True).stdout.strip()
    # (Without a checkout, as in an image, the version stands in.)
    assert code_version().removesuffix("+dirty") == (head or harness.__version__)


def test_an_install_inside_a_users_repository_does_not_record_the_users_commit(tmp_path):
    user = tmp_path / "project"
    site = user / ".venv" / "lib" / "site-packages"
    shutil.copytree(PACKAGE, site / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=u", "-c", "user.email=u@example.org"]
    subprocess.run([*git, "init", "-q", str(user)], check=True)
    (user / "train.py").write_text("print('mine')\n")
    subprocess.run([*git, "-C", str(user), "add", "train.py"], check=True)
    subprocess.run([*git, "-C", str(user), "commit", "-qm", "mine"], check=True)
    users = subprocess.run(["git", "-C", str(user), "rev-parse", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_CODE_VERSION"}
    env["PYTHONPATH"] = str(site)
    found = subprocess.run(
        [sys.executable, "-c", "import harness, harness.tracking.provenance as p;"
         " print(harness.__file__); print(p.code_version()); print(harness.__version__)"],
        cwd=user, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert found[0].startswith(str(site))
    assert users not in found[1] and found[1] == found[2]
