"""Supply chain (SPEC §9): every dependency locked with hashes, the locks current, installs checked.

pip-compile needs the package index, so `make test` checks the locks offline: the closure
of `pyproject.toml`'s requirements over the installed packages' own metadata is exactly
what each lock pins, at the versions installed, every pin with hashes; the image's build
lock holds `[build-system] requires`. `make lock-check` resolves again against the index
and diffs.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: pip-compile --allow-unsafe pins these build tools too; nothing requires them at run time.
UNSAFE = {"pip", "setuptools"}
_PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.M
)


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """{package: (version, number of hashes)} of a lock file."""
    text = (REPO / lock).read_text()
    found = {canonicalize_name(m[1]): (m[2], m[3].count("--hash=")) for m in _PIN.finditer(text)}
    requirement_lines = [
        line for line in text.splitlines() if line and not line.startswith((" ", "#"))
    ]
    assert len(requirement_lines) == len(found), "a requirement without == and hashes"
    return found


def closure(requirements: list[str]) -> set[str]:
    """Every distribution `requirements` need, through the installed packages' metadata."""
    env = default_environment()
    todo = [(Requirement(r), "") for r in requirements]
    seen: set[str] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {**env, "extra": extra}
        ):
            continue
        name = canonicalize_name(requirement.name)
        extras = sorted(requirement.extras)
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        for sub in metadata.requires(name) or []:
            parsed = Requirement(sub)
            for wanted in ["", *extras]:
                todo.append((parsed, wanted))
    return {key.split("[")[0] for key in seen}


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        pytest.param("requirements.lock", [], id="runtime"),
        pytest.param("requirements-dev.lock", ["dev"], id="dev"),
    ],
)
def test_the_lock_pins_exactly_the_closure_of_pyproject_with_hashes(
    lock: str, extras: list[str]
) -> None:
    """Every requirement, transitive ones included, pinned at the installed version, hashed."""
    requirements = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        requirements += PYPROJECT["project"]["optional-dependencies"][extra]
    locked = pins(lock)
    needed = closure(requirements)

    assert set(locked) - UNSAFE == needed - UNSAFE, (
        f"not locked: {sorted(needed - set(locked))}; "
        f"locked but not needed: {sorted(set(locked) - needed - UNSAFE)} (run `make lock`)"
    )
    for name, (version, hashes) in locked.items():
        assert hashes >= 1, name
        if name not in UNSAFE:
            assert metadata.version(name) == version, f"{name}: installed != locked ({lock})"
    for requirement in map(Requirement, requirements):
        version = locked[canonicalize_name(requirement.name)][0]
        assert requirement.specifier.contains(version, prereleases=True), requirement


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-build.lock"])
def test_the_image_locks_agree_with_the_dev_lock(lock: str) -> None:
    """The image runs and builds with exactly the versions the tests ran (dev lock)."""
    image, dev = pins(lock), pins("requirements-dev.lock")

    assert {n: v for n, (v, _) in image.items()} == {n: dev[n][0] for n in image}


def test_the_build_lock_holds_the_build_backend_of_pyproject() -> None:
    """requirements-build.lock pins, with hashes, what `[build-system] requires` asks for."""
    locked = pins("requirements-build.lock")

    for requirement in map(Requirement, PYPROJECT["build-system"]["requires"]):
        version, hashes = locked[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), requirement
        assert hashes >= 1


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        pytest.param(
            "Makefile",
            "pip install --quiet --require-hashes --no-deps -r requirements-dev.lock",
            id="make-install",
        ),
        pytest.param("Dockerfile", "--require-hashes --no-deps -r requirements.lock", id="image"),
        pytest.param(
            "Dockerfile", "--require-hashes --no-deps -r requirements-build.lock", id="image-build"
        ),
        pytest.param("Dockerfile", "--no-build-isolation", id="image-no-unchecked-build-deps"),
        pytest.param("requirements.lock", "--generate-hashes", id="runtime-generated"),
        pytest.param("requirements-dev.lock", "--extra=dev --generate-hashes", id="dev-generated"),
    ],
)
def test_installs_check_the_hashes_of_the_lock(path: str, needle: str) -> None:
    """`make install` and the image install only from a lock, hash-checked."""
    assert needle in (REPO / path).read_text()
