"""Alembic stays one linear chain: one head, one base, every revision named once.

Two branches that each add a migration make two heads; `alembic upgrade head` then refuses to
run and the server cannot start. Renumber one of them on merge (the README says how).
"""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from resolvers.kit.migrate import alembic_config


def test_one_linear_chain_of_migrations() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    heads = script.get_heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: re-chain one migration onto the other"
    assert len(script.get_bases()) == 1
    chain = list(script.walk_revisions())  # head → base, raises on a broken link
    assert chain[0].revision == heads[0]
    assert all(len(r._normalized_down_revisions) <= 1 for r in chain), "no merge revisions"
    files = sorted(p.name for p in Path(script.versions).glob("[0-9]*.py"))
    assert len(files) == len(chain), f"a migration file is not in the chain: {files}"
