"""docs/PLUGINS.md's contract reference is the code's: every public part of the task classes has a role, and
the generated table in the docs is what the code gives today."""

from __future__ import annotations

from pathlib import Path

from suite.contract import END, START, reference_table, unassigned

DOC = Path(__file__).resolve().parent.parent / "docs" / "PLUGINS.md"


def test_every_public_part_of_the_contract_has_a_role():
    assert unassigned() == [], "a new public part of ClassificationTask needs a role (suite/contract.py roles)"


def test_the_docs_reference_table_matches_the_code():
    text = DOC.read_text()
    assert START in text and END in text
    documented = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert documented == reference_table(), "docs/PLUGINS.md is stale: paste `python -m suite.contract` into it"


def test_the_reference_names_every_required_part_and_its_types():
    table = reference_table()
    for name in ("load_data", "decode_input", "build_inputs", "build_backbone"):
        assert any(f"`{name}`" in row and row.endswith("`required` |") for row in table.splitlines()), name
    assert "| how it appears | `output_title` | `str` | `'Output'` |" in table
    assert any(row.startswith("| how it learns | `build_model` (ClassificationTask)") for row in table.splitlines())
