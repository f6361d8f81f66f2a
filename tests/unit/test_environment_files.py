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


def test_uv_takes_the_package_sources_pip_is_configured_with():
    import importlib.util

    import pytest

    spec = importlib.util.spec_from_file_location("pip_sources", ROOT / "scripts" / "pip_sources.py")
    pip_sources = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pip_sources)
    listed = ("global.cert='/etc/ssl/certs/ca.crt'\n"
              ":env:.find-links='/opt/wheels'\n"
              "global.extra-index-url='file:///a/simple file:///b/simple'\n"
              "global.find-links='/elsewhere'\n"
              "global.index-url='https://pypi.org/simple'\n"
              "install.index-url='https://mirror.example/simple'\n"
              "global.constraint='/etc/pip/constraints.txt'\n")
    assert pip_sources.uv_flags(listed) == [  # PIP_FIND_LINKS over [global]; [install] over [global]
        "--index-url", "https://mirror.example/simple", "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple", "--find-links", "/opt/wheels", "--constraint", "/etc/pip/constraints.txt"]
    assert pip_sources.uv_flags("global.timeout='60'\n") == []  # nothing configured: uv's defaults, as pip's
    with pytest.raises(ValueError, match="several URLs"):
        pip_sources.uv_flags(":env:.index-url='https://a/simple https://b/simple'\n")
