"""cryoal._repr: the data layers declare views, cryoal.viz supplies them on first display."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryoal import _repr
from cryoal.io import Volume


def test_importing_io_does_not_load_viz() -> None:
    """io and acquisition are below viz (active is above it: its gallery draws with viz)."""
    code = (
        "import sys, cryoal.io, cryoal.acquisition\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryoal.viz')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_first_display_imports_the_provider_and_renders() -> None:
    code = (
        "import sys, numpy as np\nfrom pathlib import Path\n"
        "from cryoal.io import Volume\n"
        "v = Volume(np.arange(512, dtype=np.float32).reshape(8, 8, 8), 2.0, (0.0, 0.0, 0.0), Path('v.mrc'))\n"
        "html = v._repr_html_()\n"
        "print('cryoal.viz._html' in sys.modules, html.startswith('<div') and '<b>Volume</b>' in html)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "True"]


def test_unknown_kind_renders_none_and_a_registered_one_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_repr, "_RENDERERS", dict(_repr._RENDERERS))
    monkeypatch.setattr(_repr, "_PROVIDERS", [])

    class Thing:
        _repr_html_ = _repr.html_view("thing-for-test")

    assert Thing()._repr_html_() is None  # Jupyter falls back to repr()
    _repr.register_html("thing-for-test", lambda obj: f"<i>{type(obj).__name__}</i>")
    assert Thing()._repr_html_() == "<i>Thing</i>"


def test_a_provider_that_fails_to_import_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_repr, "_PROVIDERS", ["cryoal.no_such_module_for_test"])
    monkeypatch.setattr(_repr, "_RENDERERS", {})
    assert _repr.renderer("volume") is None
    assert _repr._PROVIDERS == []  # tried once, not on every display


def test_volume_view_comes_from_viz() -> None:
    from cryoal.viz._html import volume_html

    vol = Volume(np.ones((4, 4, 4), dtype=np.float32), 1.5, (0.0, 0.0, 0.0), Path("v.mrc"))
    assert _repr.renderer("volume") is volume_html
    assert vol._repr_html_() == volume_html(vol)
