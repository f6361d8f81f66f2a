"""Open a rendered page as a reader would: headless Chromium, no network, after its scripts have run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# A proxy that refuses every connection: any remote fetch fails, as it would on a train.
OFFLINE = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def chromium() -> str:
    """The Chromium binary; missing skips locally but fails in CI (.ci/run installs it)."""
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    message = "Chromium not found (Debian: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def rendered_dom(page: Path, budget_ms: int = 20_000) -> str:
    """The page's DOM once its scripts (MathJax) have run, loaded from file:// with the network cut off."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", *OFFLINE,
           f"--virtual-time-budget={budget_ms}", "--dump-dom", Path(page).resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def math_problems(dom: str) -> list[str]:
    """Why the formulas of a rendered DOM are not all typeset (empty when they are)."""
    problems = []
    sources = len(re.findall(r'<script type="math/tex', dom))  # MathJax keeps each formula's source here
    typeset = len(re.findall(r'class="MathJax(?:_Display)?"|class="MathJax_SVG', dom))
    if 'class="MathJax_Error"' in dom:
        problems.append("MathJax reported a processing error")
    visible = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    raw = re.findall(r"\$[^$<]*\\(?:frac|sum|mathrm|log|le)[^$<]*\$", visible)
    if raw:
        problems.append(f"formulas left as source text: {raw[:3]}")
    if typeset < sources:
        problems.append(f"{sources} formulas found, {typeset} typeset")
    return problems
