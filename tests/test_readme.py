"""The README's Python example runs as printed and does what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert bash[0].strip() == "pip install torch==2.13.0 && pip install . && cryoal select --demo"
    test_command = bash[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci, ".ci/run must run exactly the README's test command"


def test_readme_python_example_runs(tmp_path: Path) -> None:
    (block,) = _python_blocks((ROOT / "README.md").read_text())
    script = block + (
        "\nassert len(picks.indices) == 12"
        "\nassert len(set(picks.indices.tolist())) == 12"
        "\nassert not set(picks.indices.tolist()) & set(range(16)), 'picked a training volume'"
        "\nassert bool((picks.scores[:-1] >= picks.scores[1:]).all()), 'picks not ranked'\n"
    )
    env = {**os.environ, "CRYOAL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensor(" in result.stdout
