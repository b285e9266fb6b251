"""Importing copick through cryoal leaves the program's logging as it was."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging
logging.basicConfig(level=logging.WARNING, format="%(message)s")
before = (list(logging.getLogger().handlers), logging.getLogger().level)
from cryoal.io._copick import import_copick
copick = import_copick()
after = (list(logging.getLogger().handlers), logging.getLogger().level)
assert hasattr(copick, "from_file"), copick
assert before == after, (before, after)
logging.getLogger("cryoal.test").info("must not be shown")
print("ok")
"""


def test_import_copick_keeps_root_handlers_and_level() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert "must not be shown" not in res.stderr


LATER = """
import logging, sys, tempfile
logging.basicConfig(level=logging.WARNING, format="%(message)s")
before = (list(logging.getLogger().handlers), logging.getLogger().level)
from cryoal.io._copick import import_copick
copick = import_copick()
from copick.models import PickableObject
folder = tempfile.mkdtemp()
copick.new_config(folder + "/c.json", folder + "/overlay",
                  pickable_objects=[PickableObject(name="r", is_particle=True, label=1, radius=1)])
root = copick.from_file(folder + "/c.json")   # imports copick.ops.open, copick.impl.filesystem
root.new_run("TS-1").new_picks("r", "s", "u").from_numpy(__import__("numpy").zeros((1, 3)))
import copick.util.formats, copick.ops.add     # more submodules that call get_logger on import
after = (list(logging.getLogger().handlers), logging.getLogger().level)
assert before == after, (before, after)
assert "copick.impl.filesystem" in sys.modules
logging.getLogger("cryoal.test").info("must not be shown")
print("ok")
"""


def test_copick_submodules_loaded_later_keep_them_too() -> None:
    """``copick.from_file`` and ``copick.util.formats`` load submodules that call copick's
    ``get_logger`` (basicConfig(force=True)) on import: after import_copick they do not."""
    res = subprocess.run([sys.executable, "-c", LATER], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert "must not be shown" not in res.stderr


def test_plain_import_copick_would_replace_them() -> None:
    """The reason for the wrapper: copick's own import forces an INFO root handler."""
    script = SCRIPT.replace(
        "from cryoal.io._copick import import_copick\ncopick = import_copick()", "import copick"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode != 0 and "AssertionError" in res.stderr
