"""cryoal.io.persist: the one pool manifest format, its registry and its failure modes.

Pools are built from real MRC / PNG / OME-Zarr files; round trips of every pool class
are in tests/io/test_base.py. Here: a file that moved, was edited or vanished is one
PoolChangedError naming the item; a corrupt, truncated, unknown-version or unknown-kind
manifest is one PoolManifestError; load reads no volume when nothing changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas.testing as pd_testing
import pytest
from _tomodata import SHAPE, particles_table, tomogram_data, write_mrc

from cryoal.errors import (
    ConfigError,
    InvalidLabelsError,
    InvalidVolumeError,
    PoolChangedError,
    PoolManifestError,
)
from cryoal.io import VolumePool, load_pool, open_tomograms, write_volume
from cryoal.io import mrc as mrc_module
from cryoal.io.images import ImagePool, write_image
from cryoal.io.index import PoolIndex
from cryoal.io.persist import POOL_KINDS, read_pool_manifest, register_pool_kind
from cryoal.io.tomopool import TomogramPool
from cryoal.tasks.seg_data import PatchPool

BOX = 8


def _saved_volumes(tmp: Path, n: int = 3) -> tuple[Path, list[Path]]:
    rng = np.random.default_rng(0)
    files = [
        write_volume(
            tmp / "vols" / f"v{i}.mrc", rng.normal(size=(BOX,) * 3).astype(np.float32), 4.0
        )
        for i in range(n)
    ]
    return VolumePool.from_directory(tmp / "vols").save(tmp / "pool.json"), files


def test_a_moved_file_is_one_error_naming_the_item(tmp_path: Path) -> None:
    saved, files = _saved_volumes(tmp_path)
    files[1].rename(tmp_path / "elsewhere.mrc")
    with pytest.raises(PoolChangedError, match=r"item 'v1\.mrc' cannot be read any more") as e:
        load_pool(saved)
    assert "No such file" in str(e.value) and str(saved) in str(e.value)
    assert isinstance(e.value, InvalidVolumeError)  # the CLI reports it like any bad volume


def test_an_edited_file_is_one_error_naming_the_item_and_its_file(tmp_path: Path) -> None:
    saved, files = _saved_volumes(tmp_path)
    data = np.ones((BOX, BOX, BOX + 1), np.float32)  # another box: another header
    write_volume(files[2], data, 4.0)
    with pytest.raises(PoolChangedError, match=r"item 'v2\.mrc' \(.*v2\.mrc\) changed since"):
        VolumePool.load(saved)


def test_an_edited_image_and_a_moved_crop_are_named(tmp_path: Path) -> None:
    files = [
        write_image(tmp_path / "imgs" / f"i{i}.png", np.full((4, 6), i, np.uint8)) for i in range(2)
    ]
    saved = ImagePool.from_directory(tmp_path / "imgs").save(tmp_path / "imgs.json")
    write_image(files[0], np.full((4, 6), 99, np.uint8))
    files[0].write_bytes(files[0].read_bytes() + b"\0")  # PNG header unchanged, size not
    with pytest.raises(PoolChangedError, match=r"item 'i0\.png'"):
        load_pool(saved)
    rng = np.random.default_rng(1)
    crop = write_volume(
        tmp_path / "crops" / "a.mrc", rng.normal(size=(BOX,) * 3).astype(np.float32), 10.0
    )
    psaved = PatchPool.from_directories(tmp_path / "crops", patch=4, classes=["bg", "fg"]).save(
        tmp_path / "patches.json"
    )
    crop.unlink()
    with pytest.raises(PoolChangedError, match=r"item 'a\.mrc@0,0,0' cannot be read"):
        load_pool(psaved)


def test_a_replaced_tomogram_is_named(tmp_path: Path) -> None:
    tomo = write_mrc(tmp_path / "tomos" / "TS_01.mrc", tomogram_data(0))
    pool = TomogramPool(open_tomograms(tomo.parent), particles_table({"TS_01": SHAPE}, 2), 16)
    saved = pool.save(tmp_path / "tomo.json")
    write_mrc(tomo, tomogram_data(5))  # same header and size, other voxels: the probes differ
    with pytest.raises(PoolChangedError, match=r"item 'TS_01:000000'.*changed since"):
        load_pool(saved)


def test_load_reads_no_volume_when_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved, files = _saved_volumes(tmp_path, n=4)
    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    calls: list[object] = []
    real_load = mrc_module._load
    monkeypatch.setattr(
        "cryoal.io.pool._load", lambda *a, **k: calls.append(a) or real_load(*a, **k)
    )
    pool = load_pool(saved)
    monkeypatch.undo()
    assert calls == []  # no volume decoded
    assert sorted(o for o in opened if o.endswith(".mrc")) == sorted(
        map(str, files)
    )  # 1 header each
    assert pool.read(3).shape == (BOX,) * 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"corrupt or truncated pool manifest"),
        ('{"format": "cryoal-pool", "format_version": 1, "kind": "vol', r"corrupt or truncated"),
        ("[1, 2]", r"not a cryoal pool manifest"),
        ('{"format": "cryoal-pool", "format_version": 99}', r"format_version 99 is newer"),
        ('{"format": "cryoal-pool", "format_version": "1"}', r"no valid format_version"),
        ('{"format": "cryoal-pool", "format_version": 1}', r"lacks 'kind'"),
        ("\xff\xfe", r"corrupt or truncated|not UTF-8"),
    ],
)
def test_a_corrupt_manifest_is_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    bad = tmp_path / "pool.json"
    bad.write_text(text, encoding="latin-1")
    with pytest.raises(PoolManifestError, match=match):
        load_pool(bad)
    with pytest.raises(PoolManifestError, match=match):
        VolumePool.load(bad)


def test_a_truncated_or_tampered_manifest_is_one_clear_error(tmp_path: Path) -> None:
    saved, _ = _saved_volumes(tmp_path)
    text = saved.read_text()
    saved.write_text(text[: len(text) // 2])
    with pytest.raises(PoolManifestError, match=r"truncated"):
        load_pool(saved)
    doc = json.loads(text)
    for field, value, match in [
        ("checksums", doc["checksums"][:-1], r"3 ids but 2 checksums"),
        ("kind", "hologram", r"unknown pool kind 'hologram'; known: image, patch"),
        ("ids", "v0.mrc", r"field 'ids' is malformed"),
    ]:
        saved.write_text(json.dumps({**doc, field: value}))
        with pytest.raises(PoolManifestError, match=match):
            load_pool(saved)
    saved.write_text(json.dumps({**doc, "extra": {**doc["extra"], "file_of": [0, 1, 7]}}))
    with pytest.raises(PoolManifestError, match=r"'file_of' points past its 3 sources"):
        load_pool(saved)
    saved.write_text(json.dumps({**doc, "extra": {**doc["extra"], "labels": [None]}}))
    with pytest.raises(PoolManifestError, match=r"'labels' has 1 entries for 3 items"):
        load_pool(saved)


def test_a_manifest_of_another_kind_is_refused_by_the_class(tmp_path: Path) -> None:
    saved, _ = _saved_volumes(tmp_path)
    with pytest.raises(PoolManifestError, match=r"holds a 'volume' pool, not a 'image' pool"):
        ImagePool.load(saved)
    assert read_pool_manifest(saved).kind == "volume"


def test_missing_manifest_and_pool_index(tmp_path: Path) -> None:
    with pytest.raises(PoolManifestError, match=r"nope\.json: cannot read"):
        load_pool(tmp_path / "nope.json")
    rng = np.random.default_rng(0)
    for i in range(2):
        write_volume(tmp_path / "v" / f"{i}.mrc", rng.normal(size=(4, 4, 4)).astype(np.float32))
    index = PoolIndex.from_directory(tmp_path / "v")
    saved = index.save(tmp_path / "index.npz")
    assert list(load_pool(saved).ids) == list(index.ids)
    saved.write_bytes(saved.read_bytes()[:200])  # truncated zip
    with pytest.raises(PoolManifestError, match=r"unreadable pool index"):
        load_pool(saved)


def test_in_memory_pools_refuse_to_save(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"in-memory ImagePool"):
        ImagePool.from_array(np.zeros((2, 4, 4), np.float32)).save(tmp_path / "a.json")
    patches = PatchPool.from_arrays(
        [np.zeros((4, 4, 4), np.float32)], class_names=["a", "b"], patch=4
    )
    with pytest.raises(ConfigError, match=r"in-memory PatchPool"):
        patches.save(tmp_path / "b.json")
    assert not list(tmp_path.iterdir())  # nothing written


class MyPool:
    """A pool kind registered from outside cryoal (load returns what it parsed)."""

    @classmethod
    def load(cls, path: Path) -> list[str]:
        return read_pool_manifest(path, "my-volumes").ids


def test_the_registry_dispatches_on_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved, _ = _saved_volumes(tmp_path)
    doc = json.loads(saved.read_text())
    saved.write_text(json.dumps({**doc, "kind": "my-volumes"}))
    with pytest.raises(PoolManifestError, match=r"unknown pool kind 'my-volumes'"):
        load_pool(saved)
    monkeypatch.setitem(POOL_KINDS, "my-volumes", "")
    register_pool_kind("my-volumes", f"{__name__}:MyPool")
    assert load_pool(saved) == ["v0.mrc", "v1.mrc", "v2.mrc"]
    assert sorted(k for k in POOL_KINDS if k != "my-volumes") == [
        "image",
        "patch",
        "tomogram",
        "volume",
    ]


def test_tomogram_pool_keeps_its_particle_columns_refusals_and_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tomo = write_mrc(tmp_path / "proj" / "tomos" / "TS_01.mrc", tomogram_data(0))
    table = particles_table({"TS_01": SHAPE}, 4)
    table["rot"], table["tilt"], table["psi"] = [10.0, 20.0, 30.0, 40.0], 5.0, [1.0, np.nan, 3, 4]
    table["score"] = [1, 2, 3, 4]
    table["note"] = ["a", None, "c", "d"]
    table.loc[3, ["x", "y", "z"]] = [5.0, 5.0, 5.0]  # 0.5 voxel from the corner: refused
    pool = TomogramPool(
        open_tomograms(tomo.parent), table, 16, edge="refuse", shift="fourier"
    ).inverted()
    assert list(pool.refused) == ["TS_01:000003"]
    saved = pool.save(tmp_path / "proj" / "pool.json")
    monkeypatch.chdir(tmp_path)
    loaded = load_pool(saved)
    assert isinstance(loaded, TomogramPool)
    assert loaded.refused == pool.refused and loaded.invert and loaded.shift == "fourier"
    assert loaded.edge == "refuse" and loaded.source == pool.source
    pd_testing.assert_frame_equal(loaded.item_table(), pool.item_table())
    for col in ("rot", "tilt", "psi", "score"):
        np.testing.assert_array_equal(loaded.particles[col], pool.particles[col])
        assert loaded.particles[col].dtype == pool.particles[col].dtype
    pd_testing.assert_series_equal(loaded.particles["note"], pool.particles["note"])
    assert loaded.particles["note"].tolist()[::2] == ["a", "c"]
    np.testing.assert_array_equal(loaded.read(1), pool.read(1))
    upright = TomogramPool(open_tomograms(tomo.parent), table, 16, edge="refuse", shift="fourier")
    np.testing.assert_array_equal(loaded.read(0), -upright.read(0))


def test_an_inverted_volume_pool_reads_inverted_after_load(tmp_path: Path) -> None:
    _saved_volumes(tmp_path)
    plain = VolumePool.from_directory(tmp_path / "vols")
    saved = plain.inverted().save(tmp_path / "inv.json")
    np.testing.assert_array_equal(VolumePool.load(saved).read(2), -plain.read(2))


def test_a_vanished_label_map_is_one_error_naming_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for d in ("crops", "masks"):
        write_volume(tmp_path / d / "a.mrc", rng.normal(size=(BOX,) * 3).astype(np.float32), 10.0)
    mask = tmp_path / "masks" / "a.mrc"
    write_volume(mask, np.ones((BOX,) * 3, np.int8), 10.0)
    pool = PatchPool.from_directories(
        tmp_path / "crops", tmp_path / "masks", patch=4, classes=["bg", "fg"]
    )
    saved = pool.save(tmp_path / "patches.json")
    assert load_pool(saved).labelled_indices() == pool.labelled_indices() == list(range(8))
    mask.unlink()
    with pytest.raises(InvalidLabelsError, match=r"masks/a\.mrc: not a readable MRC label map"):
        load_pool(saved)
