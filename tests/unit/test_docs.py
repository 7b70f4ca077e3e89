"""The docs cover what revmon exports and reads, and never point outside the repository."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from revmon.families import FAMILIES
from revmon.settings import Settings, default_values

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# The v2 names (SPEC v2 renames) documented ahead of the code that exports them.
V2_FAMILIES = (
    "revmon_funnel_dwell_seconds",
    "revmon_pipeline_cycle_seconds",
    "revmon_sales_activity_seconds",
)


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (`Worker`, `tuple[Target, ...]`, `X | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def config_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every leaf key of the configuration, dotted (`worker.app_id`, `targets[].period`)."""
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        inner = _models(info.annotation)
        if not inner:
            yield key
        for nested in inner:
            many = typing.get_origin(info.annotation) in (tuple, list)
            yield from config_keys(nested, key + ("[]." if many else "."))


def _markdown_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.md") if not {".venv", ".git"} & set(p.parts))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


@pytest.mark.parametrize("name", sorted(FAMILIES) + list(V2_FAMILIES))
def test_every_exported_family_has_a_row_in_the_metrics_doc(name: str) -> None:
    """docs/metrics.md has a row for every family of `revmon.families.FAMILIES`."""
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")

    assert f"| `{name}` |" in text


def test_every_config_key_is_in_the_configuration_doc() -> None:
    """docs/configuration.md names every key of the Settings model, nested ones dotted."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")

    missing = sorted(key for key in config_keys(Settings) if f"`{key}`" not in text)

    assert not missing


def test_every_default_is_a_key_the_docs_name() -> None:
    """Every top-level key of revmon/defaults.yaml is documented."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")

    assert not [key for key in default_values() if f"`{key}" not in text]


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=str(p.relative_to(REPO))) for p in _markdown_files()]
)
def test_links_stay_inside_the_repository_and_resolve(path: Path) -> None:
    """Every relative link of a Markdown file names a file of the repository (and a heading
    of it, after `#`); none points outside the repository."""
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # a URL (http:, mailto:): not a file
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if (
            not resolved.is_relative_to(REPO)
            or not resolved.exists()
            or (anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved))
        ):
            broken.append(target)

    assert not broken
    assert "../shared" not in text
