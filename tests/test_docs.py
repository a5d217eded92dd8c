"""The documentation: the README stays short and self-contained, its links resolve, and the
study-file reference is what the schema generates (every key, its type and its default)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.config import TrialConfig, dotted_keys, section_at
from harness.config.reference import PAGE, main, reference
from harness.config.schema import Study

ROOT = Path(__file__).resolve().parents[1]


def test_the_key_reference_is_the_one_the_schema_generates():
    page = ROOT / PAGE
    assert page.read_text(encoding="utf-8") == reference(), (
        f"{PAGE} is out of date: python -m harness.config.reference > {PAGE}")
    assert main(["--check", str(page)]) == 0


def test_the_reference_has_every_key_with_a_type_a_default_and_a_description():
    text = reference()
    keys = [k for k in dotted_keys(Study) if not k.startswith("base")]
    keys += [f"base.{k}" for k in dotted_keys(TrialConfig)]
    for key in keys:
        parts = tuple(key.split("."))
        if section_at(Study, parts) is not None and key != "seeds":  # a section: its heading
            assert f"## `{key}`" in text, key
            continue
        row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        kind, default, what = [cell.strip() for cell in row.split(" | ")[1:4]]
        assert kind and default and what.rstrip(" |"), row


def test_a_stale_reference_is_found(tmp_path):
    stale = tmp_path / "reference.md"
    stale.write_text(reference().replace("`test_acc`", "`val_acc`", 1))
    assert main(["--check", str(stale)]) == 1


def test_the_readme_is_short_shows_the_two_commands_and_links_only_to_what_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 170
    assert "make quickstart" in readme and "make test" in readme
    assert "vary with" in readme  # the quick-start's figures depend on the CPU
    assert "pip install" in readme
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_no_page_refers_to_what_a_user_does_not_have():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"document 00\d|shared/seeds|\.\./shared", text), page
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), (page, target)
