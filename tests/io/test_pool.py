"""VolumePool: indexing, ids, lazy reads, box checks, labels, subsets and the Dataset view."""

from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from cryoal.errors import EmptyPoolError, InvalidLabelsError, InvalidVolumeError
from cryoal.io import VolumePool, read_volume, write_hdf5_pool


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _make_tree(root: Path, raw, make_volumes) -> dict[str, np.ndarray]:
    vols = make_volumes(8, seed=3)
    files = {
        "b.mrc": 0,
        "a.mrc": 1,
        "sub/c.mrc": 2,
        "sub/deep/d.mrc": 3,
        ".hidden/e.mrc": 4,
        ".tmp.mrc": 4,
    }
    for rel, k in files.items():
        raw(root / rel, vols[k])
    raw(root / "sub/s.mrcs", vols[5:8])
    (root / "notes.txt").write_text("not a volume")
    expected = {rel: vols[k] for rel, k in files.items() if not rel.startswith(".")}
    expected.update({f"sub/s.mrcs#{i}": vols[5 + i] for i in range(3)})
    return expected


@pytest.fixture(scope="session")
def pool_tree(tmp_path_factory: pytest.TempPathFactory, raw, make_volumes):
    root = tmp_path_factory.mktemp("tree")
    return root, _make_tree(root, raw, make_volumes)


def test_directory_ids_sorted_and_stacks_expanded(pool_tree):
    root, expected = pool_tree
    pool = VolumePool.from_directory(root, ["*.mrc", "*.mrcs", "*.txt"])
    assert pool.ids == [
        "a.mrc",
        "b.mrc",
        "sub/c.mrc",
        "sub/deep/d.mrc",
        "sub/s.mrcs#0",
        "sub/s.mrcs#1",
        "sub/s.mrcs#2",
    ]
    assert pool.root == root
    assert pool.box == (16, 16, 16)
    assert pool.voxel_size == 4.0
    for i, id_ in enumerate(pool.ids):
        x = pool[i]
        assert x.shape == (1, 16, 16, 16) and x.dtype == torch.float32
        np.testing.assert_array_equal(x[0].numpy(), expected[id_])  # raw values
    np.testing.assert_array_equal(pool[-1][0].numpy(), expected["sub/s.mrcs#2"])
    assert pool.index_of("sub/deep/d.mrc") == 3
    assert pool.path_of(5) == root / "sub" / "s.mrcs"
    assert pool.check() is pool


def test_inverted_pool_reads_minus_x_and_keeps_the_flag(pool_tree, tmp_path: Path):
    from cryoal.io.index import PoolIndex

    root, expected = pool_tree
    pool = VolumePool.from_directory(root, ["*.mrc", "*.mrcs"])
    inv = pool.inverted()
    assert not pool.invert and inv.invert and inv.ids == pool.ids
    for i, id_ in enumerate(pool.ids):
        np.testing.assert_array_equal(inv[i][0].numpy(), -expected[id_])
        np.testing.assert_array_equal(pool[i][0].numpy(), expected[id_])  # original untouched
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\na.mrc,x\nb.mrc,y\n")
    derived = inv.subset([1, 0]).with_labels(labels)
    assert derived.invert and derived.labels == ["y", "x"]
    np.testing.assert_array_equal(derived[0][0].numpy(), -expected["b.mrc"])
    x, _ = derived.dataset()[0]
    np.testing.assert_array_equal(x[0].numpy(), -expected["b.mrc"])
    assert not inv.inverted(False).invert
    index = PoolIndex.from_directory(root, ["*.mrc", "*.mrcs"]).inverted()
    assert index.invert and index.to_pool().invert
    for i in range(len(index)):
        np.testing.assert_array_equal(index[i][0].numpy(), -expected[index.ids[i]])


def test_directory_not_recursive_and_default_pattern(pool_tree):
    root, _ = pool_tree
    assert VolumePool.from_directory(root, recursive=False).ids == ["a.mrc", "b.mrc"]
    assert len(VolumePool.from_directory(root)) == 4  # *.mrc only


def test_index_out_of_range_and_unknown_id(pool_tree):
    root, _ = pool_tree
    pool = VolumePool.from_directory(root)
    with pytest.raises(IndexError, match=_exact("pool index 4 out of range for 4 items")):
        pool[4]
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(
            f"id 'zz.mrc' is not in the pool (4 items under {root}); ids look like 'a.mrc'"
        ),
    ):
        pool.index_of("zz.mrc")


def test_indexing_opens_no_file(tmp_path: Path):
    """2000 empty files index in well under a second: nothing is opened or stat-ed."""
    for i in range(2000):
        (tmp_path / f"v{i:05d}.mrc").touch()
    start = time.perf_counter()
    pool = VolumePool.from_directory(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(pool) == 2000 and pool.ids[0] == "v00000.mrc"
    assert elapsed < 1.0
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{tmp_path / 'v00000.mrc'}: truncated: the file has 0 bytes, less than the "
            "1024-byte MRC header; re-copy or re-export it"
        ),
    ):
        pool[0]


def test_empty_and_missing_directory(tmp_path: Path):
    with pytest.raises(
        EmptyPoolError,
        match=_exact(
            f"{tmp_path}: no files matching *.mrc under this folder; check the path or the "
            "pattern (e.g. '*.mrc*' also finds .mrc.gz)"
        ),
    ):
        VolumePool.from_directory(tmp_path)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(f"{tmp_path / 'nope'}: does not exist; pass a folder of MRC files"),
    ):
        VolumePool.from_directory(tmp_path / "nope")


def test_mixed_box_sizes(tmp_path: Path, raw, make_volumes):
    raw(tmp_path / "a.mrc", make_volumes(1)[0])
    raw(tmp_path / "b.mrc", make_volumes(1, box=12)[0])
    raw(tmp_path / "c.mrc", make_volumes(1)[0])
    pool = VolumePool.from_directory(tmp_path)
    message = (
        f"{tmp_path / 'b.mrc'}: box 12x12x12 differs from the pool box 16x16x16 (of a.mrc); "
        "all volumes of a pool must share one box size, re-extract or resample them"
    )
    with pytest.raises(InvalidVolumeError, match=_exact(message)):
        pool.check()
    pool[2]  # the others still read
    with pytest.raises(InvalidVolumeError, match=_exact(message)):
        pool[1]
    summary = pool.summary()
    assert summary.boxes == {(16, 16, 16): 2, (12, 12, 12): 1}
    assert summary.n_files == 3 and summary.problems == []


def test_check_reports_broken_file(tmp_path: Path, raw, make_volumes):
    raw(tmp_path / "a.mrc", make_volumes(1)[0])
    raw(tmp_path / "flat.mrc", make_volumes(1)[0, 0])
    pool = VolumePool.from_directory(tmp_path)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{tmp_path / 'flat.mrc'}: is a 2D image (16x16), not a volume; remove it from the "
            "pool or use VolumePool.from_stack for 2D images"
        ),
    ):
        pool.check()
    assert pool.summary().problems[0].startswith(f"{tmp_path / 'flat.mrc'}: is a 2D image")


def test_volume_stack_named_mrc(tmp_path: Path, raw, make_volumes):
    raw(tmp_path / "stack.mrc", make_volumes(2))
    pool = VolumePool.from_directory(tmp_path)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{tmp_path / 'stack.mrc'}: is a stack of 2 volumes, indexed as one volume; name it "
            ".mrcs (stacks are expanded by extension) or use VolumePool.from_stack"
        ),
    ):
        pool[0]
    assert len(VolumePool.from_stack(tmp_path / "stack.mrc")) == 2


def test_from_files_keeps_order(pool_tree):
    root, expected = pool_tree
    pool = VolumePool.from_files([root / "sub/c.mrc", root / "a.mrc", root / "sub/s.mrcs"])
    assert pool.root == root
    assert pool.ids == ["sub/c.mrc", "a.mrc", "sub/s.mrcs#0", "sub/s.mrcs#1", "sub/s.mrcs#2"]
    np.testing.assert_array_equal(pool[1][0].numpy(), expected["a.mrc"])
    sub = VolumePool.from_files([root / "sub/c.mrc"], root=root / "sub")
    assert sub.ids == ["c.mrc"]
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{root / 'a.mrc'}: is outside the pool root {root / 'sub'}; pass a root above it"
        ),
    ):
        VolumePool.from_files([root / "a.mrc"], root=root / "sub")
    with pytest.raises(InvalidVolumeError, match="unknown volume extension '.txt'"):
        VolumePool.from_files([root / "notes.txt"])
    with pytest.raises(InvalidVolumeError, match="duplicate id 'a.mrc' in the pool"):
        VolumePool.from_files([root / "a.mrc", root / "a.mrc"])
    with pytest.raises(EmptyPoolError, match="no files given"):
        VolumePool.from_files([])


def test_from_stack_volumes_and_images(data_dir: Path, make_volumes):
    vols = make_volumes(4)
    pool = VolumePool.from_stack(data_dir / "vstack.mrcs")
    assert pool.ids == [f"vstack.mrcs#{i}" for i in range(4)]
    np.testing.assert_array_equal(pool[2][0].numpy(), vols[2])
    images = VolumePool.from_stack(data_dir / "images.mrcs")
    assert images.box == (16, 16) and len(images) == 16
    assert images[5].shape == (1, 16, 16)
    np.testing.assert_array_equal(images[5][0].numpy(), vols[0][5])
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{data_dir / 'mode2.mrc'}: holds one volume, not a stack; use VolumePool.from_files "
            "for single volumes"
        ),
    ):
        VolumePool.from_stack(data_dir / "mode2.mrc")


def test_from_hdf5_and_from_path(tmp_path: Path, data_dir: Path, make_volumes):
    vols = make_volumes(5)
    write_hdf5_pool(tmp_path / "p.h5", vols, ids=list("abcde"), labels=["x", None, "y", "x", None])
    pool = VolumePool.from_hdf5(tmp_path / "p.h5")
    assert pool.ids == list("abcde")
    assert pool.labels == ["x", None, "y", "x", None]
    assert pool.class_names == ["x", "y"]
    np.testing.assert_array_equal(pool[3][0].numpy(), vols[3])
    assert pool.check() is pool
    assert VolumePool.from_path(tmp_path / "p.h5").ids == pool.ids
    assert VolumePool.from_path(data_dir / "vstack.mrcs").ids[0] == "vstack.mrcs#0"
    assert VolumePool.from_path(data_dir / "mode2.mrc").ids == ["mode2.mrc"]
    assert len(VolumePool.from_path(data_dir, "*.map")) == 1
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(f"{tmp_path / 'x'}: not found; pass a folder, an MRC file or an HDF5 pool"),
    ):
        VolumePool.from_path(tmp_path / "x")


def test_labels_join_and_dataset(pool_tree, tmp_path: Path):
    root, expected = pool_tree
    pool = VolumePool.from_directory(root, ["*.mrc", "*.mrcs"])
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label,note\nsub/s.mrcs#1,ribosome,x\na.mrc,proteasome,\nb.mrc,ribosome,\n")
    labelled = pool.with_labels(csv)
    assert pool.labels == [None] * 7  # the original pool is unchanged
    assert labelled.labels == ["proteasome", "ribosome", None, None, None, "ribosome", None]
    assert labelled.class_names == ["proteasome", "ribosome"]
    assert labelled.labelled_indices() == [0, 1, 5]
    assert labelled.unlabelled_indices() == [2, 3, 4, 6]

    ds = labelled.dataset(transform=lambda x: x * 2)
    assert len(ds) == 7
    assert ds.targets.tolist() == [0, 1, -1, -1, -1, 1, -1]
    x, y = ds[5]
    assert y == 1
    np.testing.assert_array_equal(x[0].numpy(), expected["sub/s.mrcs#1"] * 2)
    ds2 = labelled.dataset(class_names=["ribosome", "proteasome", "other"])
    assert ds2.targets.tolist()[:2] == [1, 0]
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(
            "2 labelled items have a class not in ['proteasome']: 'b.mrc' ('ribosome'), "
            "'sub/s.mrcs#1' ('ribosome')"
        ),
    ):
        labelled.dataset(class_names=["proteasome"])

    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    assert torch.cat([b[1] for b in batches]).tolist() == ds.targets.tolist()
    assert batches[0][0].shape == (4, 1, 16, 16, 16)

    frame = labelled.with_labels(pd.DataFrame({"id": ["sub/c.mrc"], "label": ["x"]}))
    assert frame.labels == [None, None, "x", None, None, None, None]


def test_labels_with_unknown_ids(pool_tree, tmp_path: Path):
    root, _ = pool_tree
    pool = VolumePool.from_directory(root)
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\na.mrc,x\nmissing.mrc,y\nsub/s.mrcs#0,z\n")
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(
            f"{csv}: 2 of 3 rows have an id not in the pool: line 3 'missing.mrc'; "
            "line 4 'sub/s.mrcs#0'; pool ids look like 'a.mrc'"
        ),
    ):
        pool.with_labels(csv)


def test_subset_and_pickle(pool_tree):
    root, expected = pool_tree
    pool = VolumePool.from_directory(root, ["*.mrc", "*.mrcs"]).with_labels(
        pd.DataFrame({"id": ["b.mrc"], "label": ["k"]})
    )
    sub = pool.subset(torch.tensor([6, 1]))
    assert sub.ids == ["sub/s.mrcs#2", "b.mrc"]
    assert sub.labels == [None, "k"]
    np.testing.assert_array_equal(sub[0][0].numpy(), expected["sub/s.mrcs#2"])
    with pytest.raises(IndexError, match=_exact("subset index 7 out of range for 7 items")):
        pool.subset([7])
    with pytest.raises(EmptyPoolError):
        pool.subset([])
    clone = pickle.loads(pickle.dumps(sub))
    assert clone.ids == sub.ids
    np.testing.assert_array_equal(clone[1].numpy(), sub[1].numpy())


def test_matches_read_volume(data_dir: Path):
    pool = VolumePool.from_files([data_dir / "mode1.mrc", data_dir / "vol.mrc.gz"])
    for i in range(2):
        np.testing.assert_array_equal(pool[i][0].numpy(), read_volume(pool.path_of(i)).data)


def test_symlinked_folders_followed_once(tmp_path: Path, raw, make_volumes):
    raw(tmp_path / "a" / "v.mrc", make_volumes(1)[0])
    (tmp_path / "a" / "up").symlink_to(tmp_path)  # a loop back to the root
    (tmp_path / "alias").symlink_to(tmp_path / "a")  # a second way into a/
    ids = VolumePool.from_directory(tmp_path).ids
    assert ids == ["a/v.mrc", "alias/v.mrc"]  # the loop is cut, the alias kept
