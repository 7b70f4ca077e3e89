"""`revmon schema`: the JSON Schemas it prints are the ones committed under `schemas/`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.running import REPO, revmon

pytestmark = pytest.mark.e2e

COMMITTED = REPO / "schemas"
NAMES = ("events", "metric-message", "alert-message")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory `revmon schema --out` wrote, once for the module."""
    out = tmp_path_factory.mktemp("schemas")
    result = revmon("schema", "--out", str(out), cwd=out, timeout=30)
    assert result.code == 0, result.stderr
    return out


def test_schema_out_writes_exactly_the_committed_files(generated: Path) -> None:
    """`schema --out` writes one file per schema, the same set of names as `schemas/`."""
    written = sorted(p.name for p in generated.iterdir())
    committed = sorted(p.name for p in COMMITTED.glob("*.schema.json"))

    assert written == committed == sorted(f"{name}.schema.json" for name in NAMES)


@pytest.mark.parametrize(
    "name",
    [
        "events",
        "metric-message",
        "alert-message",
    ],
)
def test_committed_schema_is_what_revmon_generates(generated: Path, name: str) -> None:
    """Each committed schema is byte-equal to the generated one (keeps `schemas/` in sync)."""
    filename = f"{name}.schema.json"

    assert (generated / filename).read_bytes() == (COMMITTED / filename).read_bytes(), (
        f"schemas/{filename} is out of date: run `revmon schema --out schemas` and commit it"
    )


def test_schema_to_stdout_is_json_with_the_three_schemas(tmp_path: Path, generated: Path) -> None:
    """`revmon schema` prints one JSON object holding the three schemas `--out` writes."""
    result = revmon("schema", cwd=tmp_path, timeout=30)

    assert result.code == 0, result.stderr
    schemas = json.loads(result.stdout)
    assert set(schemas) == set(NAMES)
    for name in NAMES:
        assert schemas[name]["$schema"].startswith("https://json-schema.org/")
        assert schemas[name] == json.loads((generated / f"{name}.schema.json").read_text())
    events = schemas["events"]
    assert len(events["oneOf"]) == 2  # one event, or a batch of them
