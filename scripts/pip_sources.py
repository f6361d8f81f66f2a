"""Print uv's flags for the package sources pip is configured with, so that `make env`'s uv install takes every
package from the same places pip would (uv does not read pip's configuration files or PIP_* variables).

Reads `python -m pip config list` (pip's files and PIP_* variables, e.g. `global.extra-index-url='file:///x'`
or `:env:.find-links='/opt/wheels'`) and prints `--index-url`, `--extra-index-url`, `--find-links` and
`--constraint` flags, one list entry each, with pip's precedence between its configuration's scopes.
Standard library only: it runs before the project is installed."""

from __future__ import annotations

import re
import subprocess
import sys

SOURCES = ("index-url", "extra-index-url", "find-links", "constraint")
LINE = re.compile(r"^(?P<scope>:env:|[a-z]+)\.(?P<key>[a-z-]+)=(?P<value>.*)$")


def uv_flags(config_list: str) -> list[str]:
    """uv flags for the index, find-links and constraint entries of `pip config list` output. As in pip, for each
    option a PIP_* variable (scope `:env:`) overrides the `[install]` section, which overrides `[global]`."""
    scopes = {"global": 0, "install": 1, ":env:": 2}
    chosen: dict[str, tuple[int, str]] = {}
    for line in config_list.splitlines():
        match = LINE.match(line.strip())
        if not match or match["key"] not in SOURCES or match["scope"] not in scopes:
            continue
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        rank = scopes[match["scope"]]
        if match["key"] not in chosen or rank >= chosen[match["key"]][0]:
            chosen[match["key"]] = (rank, value)
    flags = []
    for key in SOURCES:
        items = chosen[key][1].split() if key in chosen else []
        if key == "index-url" and len(items) > 1:
            raise ValueError(f"pip's index-url holds several URLs {items}; pip takes one")
        flags += [flag for item in dict.fromkeys(items) for flag in (f"--{key}", item)]
    return flags


def main() -> None:
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
    print(" ".join(uv_flags(listed.stdout)))  # no flag holds whitespace: the Makefile splits on it


if __name__ == "__main__":
    main()
