"""PoolIndex: compact ids/paths, directory and list builders, persistence, row stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryoal.errors import EmptyPoolError, InvalidLabelsError, InvalidVolumeError
from cryoal.io import VolumePool, write_volume
from cryoal.io.index import PoolIndex, StringArray, entry_checksum

N_TINY = 20_000


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 000 empty ``.mrc`` files in nested folders (indexing opens no single volume)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for d in range(40):
        folder = root / f"tomo{d:02d}" / ("sub" if d % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        for k in rng.permutation(N_TINY // 40):
            (folder / f"p{k:05d}_é.mrc").touch()
    (root / ".hidden.mrc").touch()
    (root / "notes.txt").touch()
    (root / "tomo-a.mrc").touch()  # '-' sorts before '/': order must follow full paths
    return root


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(1)
    for i in range(6):
        write_volume(
            root / "a" / f"v{i}.mrc", rng.standard_normal((16, 16, 16)).astype(np.float32), 4.0
        )
    write_volume(root / "s.mrcs", rng.standard_normal((3, 16, 16, 16)).astype(np.float32), 4.0)
    return root


def test_string_array_round_trip_and_sort() -> None:
    words = ["b", "", "é/x", "a/b", "a-b", "a.b", "zz", "b"]
    arr = StringArray.from_strings(words)
    assert list(arr) == words
    assert arr[2] == "é/x" and arr[-1] == "b" and arr[1:3] == ["", "é/x"]
    assert [words[i] for i in arr.argsort()] == sorted(words)
    assert list(arr.take(np.array([6, 0, 2]))) == ["zz", "b", "é/x"]
    assert arr == words
    with pytest.raises(IndexError, match="string index 8 out of range for 8 entries"):
        arr[8]


def test_directory_index_of_20k_entries_matches_volume_pool(tiny_tree: Path) -> None:
    index = PoolIndex.from_directory(tiny_tree)
    pool = VolumePool.from_directory(tiny_tree)
    assert len(index) == N_TINY + 1
    assert list(index.ids) == pool.ids  # same ids, same order: indices agree
    assert list(index.paths) == pool.ids
    assert (index.index_in_file == -1).all()
    # compact: well under 100 bytes per entry for ~25-character ids and paths
    assert index.nbytes < 100 * len(index)
    assert index.ids.data.nbytes == sum(len(s.encode()) for s in pool.ids)
    k = 12_345
    assert index.index_of(pool.ids[k]) == k
    assert index.path_of(k) == tiny_tree / pool.ids[k]
    with pytest.raises(InvalidLabelsError, match=r"id 'nope.mrc' is not in the pool \(20001 items"):
        index.index_of("nope.mrc")


def test_non_recursive_and_patterns(tiny_tree: Path) -> None:
    index = PoolIndex.from_directory(tiny_tree, recursive=False)
    assert list(index.ids) == ["tomo-a.mrc"]
    with pytest.raises(EmptyPoolError, match=r"no files matching \*.rec under this folder"):
        PoolIndex.from_directory(tiny_tree, "*.rec")
    with pytest.raises(InvalidVolumeError, match="does not exist; pass a folder of MRC files"):
        PoolIndex.from_directory(tiny_tree / "missing")


def test_save_load_round_trip(tiny_tree: Path, tmp_path: Path) -> None:
    index = PoolIndex.from_directory(tiny_tree)
    target = index.save(tmp_path / "idx.npz")
    back = PoolIndex.load(target)
    assert back.ids == index.ids and back.paths == index.paths
    assert np.array_equal(back.index_in_file, index.index_in_file)
    assert back.root == index.root
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidVolumeError, match="bad.npz: unreadable pool index"):
        PoolIndex.load(tmp_path / "bad.npz")


def test_reading_items_equals_volume_pool(real_dir: Path) -> None:
    index = PoolIndex.from_directory(real_dir, ["*.mrc", "*.mrcs"])
    pool = VolumePool.from_directory(real_dir, ["*.mrc", "*.mrcs"])
    assert list(index.ids) == pool.ids
    assert index.ids[-3:] == ["s.mrcs#0", "s.mrcs#1", "s.mrcs#2"]
    assert index.index_in_file.tolist() == [-1] * 6 + [0, 1, 2]
    assert index.box == (16, 16, 16) and index.voxel_size == pytest.approx(4.0)
    for i in range(len(pool)):
        assert torch.equal(index[i], pool[i])
    again = index.to_pool()
    assert again.ids == pool.ids
    assert torch.equal(again[7], pool[7])
    loader = torch.utils.data.DataLoader(index, batch_size=4, num_workers=2)
    batches = torch.cat(list(loader))
    assert torch.equal(batches, torch.stack([pool[i] for i in range(len(pool))]))


def test_csv_list_with_ids_labels_and_stack_items(real_dir: Path, tmp_path: Path) -> None:
    n = N_TINY
    rows = pd.DataFrame(
        {
            "path": [
                f"../{real_dir.name}/a/v{i % 6}.mrc" if i < 6 else f"t/x{i}.mrc" for i in range(n)
            ],
            "id": [f"item{i}" for i in range(n)],
            "label": [
                "ribo" if i % 3 == 0 else ("" if i % 3 == 1 else "proteasome") for i in range(n)
            ],
        }
    )
    rows.loc[1, "path"] = "s.mrcs#2"
    rows.loc[2, "path"] = "000002@s.mrcs"  # RELION, 1-based
    rows.to_csv(tmp_path / "list.csv", index=False)
    index = PoolIndex.from_table(tmp_path / "list.csv", chunksize=3_000)
    assert len(index) == n
    assert index.ids[0] == "item0" and index.ids[n - 1] == f"item{n - 1}"
    assert index.paths[1] == "s.mrcs" and index.index_in_file[1] == 2
    assert index.paths[2] == "s.mrcs" and index.index_in_file[2] == 1
    assert index.classes == ["proteasome", "ribo"]
    assert index.labels[:3] == ["ribo", None, "proteasome"]
    assert int((index.label_codes >= 0).sum()) == sum(1 for i in range(n) if i % 3 != 1)
    assert index.index_of("item19999") == 19_999


def test_csv_without_ids_and_errors(tmp_path: Path) -> None:
    pd.DataFrame({"path": ["a.mrc", "s.mrcs#1", "a.mrc"]}).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(InvalidLabelsError, match=r"dup.csv: duplicate ids in the list: 'a.mrc'"):
        PoolIndex.from_table(tmp_path / "dup.csv")
    pd.DataFrame({"path": ["a.mrc", "s.mrcs#1"]}).to_csv(tmp_path / "ok.csv", index=False)
    assert list(PoolIndex.from_table(tmp_path / "ok.csv").ids) == ["a.mrc", "s.mrcs#1"]
    pd.DataFrame({"file": ["a.mrc"]}).to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(InvalidLabelsError, match=r"nocol.csv: no 'path' column \(columns: file\)"):
        PoolIndex.from_table(tmp_path / "nocol.csv")
    pd.DataFrame({"path": ["x.mrc", "y.mrc.gz", "a.txt"]}).to_csv(tmp_path / "ext.csv", index=False)
    with pytest.raises(InvalidVolumeError, match="a.txt: unknown volume extension '.txt'"):
        PoolIndex.from_table(tmp_path / "ext.csv")
    pd.DataFrame({"path": ["x.mrc", "noext"]}).to_csv(tmp_path / "ext2.csv", index=False)
    with pytest.raises(InvalidVolumeError, match=r"noext: unknown volume extension '\(none\)'"):
        PoolIndex.from_table(tmp_path / "ext2.csv")
    with pytest.raises(InvalidLabelsError, match="unknown list extension '.json'"):
        PoolIndex.from_table(tmp_path / "list.json")


def test_star_list(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"rlnImageName": ["000001@s.mrcs", "000003@s.mrcs", "v.mrc"], "cryoalLabel": ["b", "a", ""]}
    )
    starfile.write({"particles": df}, tmp_path / "list.star")
    index = PoolIndex.from_table(tmp_path / "list.star")
    assert list(index.ids) == ["s.mrcs#0", "s.mrcs#2", "v.mrc"]
    assert index.labels == ["b", "a", None]


def test_rows_stream_ids_paths_and_one_checksum_per_file(real_dir: Path) -> None:
    index = PoolIndex.from_directory(real_dir, ["*.mrc", "*.mrcs"])
    rows = list(index.rows())
    assert [r[:2] for r in rows] == list(zip(index.ids, index.paths, strict=True))
    assert [r[2] for r in rows] == [entry_checksum(index.path_of(i)) for i in range(len(index))]
    stack = [r[2] for r in rows if r[1] == "s.mrcs"]
    assert len(stack) == 3 and len(set(stack)) == 1  # the three items of one stack share it
    assert {r[2] for r in index.rows(checksums=False)} == {""}
