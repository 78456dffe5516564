"""constraints.txt is the tested dependency set: it fits pyproject's ranges, and this environment installed it."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()
            pins[canonicalize_name(name)] = Version(version)
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["all"] + extras["dev"]]


def test_every_declared_dependency_is_locked_within_its_range():
    pins = locked()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in constraints.txt (run scripts/lock)"
        assert req.specifier.contains(pins[name], prereleases=True), f"locked {name}=={pins[name]} is outside {req}"


@pytest.mark.parametrize("name", ["transformers", "onnxruntime", "openvino", "nncf", "onnx", "onnxscript"])
def test_fast_movers_are_capped_below_their_next_major(name):
    req = next(r for r in declared() if canonicalize_name(r.name) == name)
    assert any(spec.operator == "<" for spec in req.specifier), f"{req} has no upper bound"


def test_this_environment_is_the_locked_set():
    """What the tests run on is what users install with the README's commands (scripts/setup -c constraints.txt)."""
    different = []
    for name, version in locked().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            different.append(f"{name} (locked {version}, not installed)")
            continue
        if Version(installed.public) != version:
            different.append(f"{name} (locked {version}, installed {installed})")
    assert not different, "environment differs from constraints.txt: " + ", ".join(different)
