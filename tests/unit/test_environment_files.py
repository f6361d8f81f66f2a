"""environment.yml must describe the same environment as pyproject.toml."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_conda_pip_list_matches_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    assert all("==" in req for req in pinned), "every dependency is pinned"
    yml = (ROOT / "environment.yml").read_text()
    conda_pins = set(re.findall(r"^\s+- ([A-Za-z0-9_.\-]+==[^\s]+)$", yml, flags=re.M))
    assert conda_pins == pinned
    assert re.search(r"^\s+- python=3\.11$", yml, flags=re.M)


def test_no_deps_packages_are_the_same_in_makefile_and_environment_yml():
    makefile = (ROOT / "Makefile").read_text()
    nodeps = re.search(r"^NODEPS := (.+)$", makefile, flags=re.M).group(1).split()
    assert nodeps and all("==" in req for req in nodeps)
    yml = (ROOT / "environment.yml").read_text()
    for req in nodeps:
        assert f"pip install --no-deps {req}" in yml, req
