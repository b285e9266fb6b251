"""The command group's error contract: one line + exit 2, --debug tracebacks, 'Did you mean'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.errors import InvalidVolumeError


def test_cryoal_error_is_one_line_and_exit_2(tmp_path: Path):
    path = tmp_path / "image.mrc"
    from cryoal.io import write_volume

    write_volume(path, [[1.0, 2.0], [3.0, 4.0]])
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "nothing.mrc")])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {tmp_path / 'nothing.mrc'}: not found; pass an MRC file, an HDF5 pool or a folder\n"
    )
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "empty")])
    assert result.exit_code == 2


def test_empty_folder_is_one_line(tmp_path: Path):
    result = CliRunner().invoke(cli, ["info", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {tmp_path}: no files matching *.mrc under this folder; check the path or the "
        "pattern (e.g. '*.mrc*' also finds .mrc.gz)\n"
    )


def test_wrong_extension_is_one_line(tmp_path: Path):
    path = tmp_path / "vol.tif"
    path.write_bytes(b"II*")
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "unknown volume extension '.tif'" in result.stderr


def test_debug_shows_the_exception(tmp_path: Path):
    result = CliRunner().invoke(cli, ["--debug", "info", str(tmp_path / "nothing.mrc")])
    assert result.exit_code == 1
    assert isinstance(result.exception, InvalidVolumeError)
    assert "not found" in str(result.exception)


def test_unknown_command_suggests():
    result = CliRunner().invoke(cli, ["inf"])
    assert result.exit_code == 2
    assert "No such command 'inf'. Did you mean 'info'?" in result.stderr


def test_version_and_help():
    from cryoal import __version__

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "info" in result.stdout


def test_help_lists_commands_without_importing_them():
    import click
    from cryoal.cli.main import COMMANDS, SUMMARIES

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cryoal.cli.main import cli\n"
        "out = CliRunner().invoke(cli, ['--help']).stdout\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryoal.cli.') or m == 'torch'))\n"
        "print(out)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, _, text = res.stdout.partition("\n")
    assert imported == "['cryoal.cli.main']"
    # every command is listed with its stored line, and that line is the command's own
    assert sorted(SUMMARIES) == sorted(COMMANDS)
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert SUMMARIES[name] == command.get_short_help_str(limit=300), name
        assert name in text
    assert "Pick the subtomograms worth labelling next" in text
