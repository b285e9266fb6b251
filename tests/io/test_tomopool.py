"""TomogramPool: boxes cut from MRC / OME-Zarr tomograms at particle coordinates."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
import zarr
from _tomodata import BOX, SHAPE, VOXEL, particles_table, tomogram_data, write_mrc, write_ome_zarr
from scipy import ndimage

from cryoal.errors import ConfigError, EmptyPoolError, InvalidLabelsError, InvalidVolumeError
from cryoal.io import VolumePool, write_volume
from cryoal.io.base import Pool
from cryoal.io.index import PoolIndex
from cryoal.io.tomograms import open_tomograms
from cryoal.io.tomopool import TomogramPool, extract_box


@pytest.fixture
def tomo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tomos"
    write_mrc(d / "TS_01.mrc", tomogram_data(0))
    write_ome_zarr(d / "TS_02.zarr", tomogram_data(1))
    return d


@pytest.fixture
def pool(tomo_dir: Path) -> TomogramPool:
    ts = open_tomograms(tomo_dir)
    return TomogramPool(ts, particles_table(ts.shapes()), BOX)


def _slice(data: np.ndarray, centre_vox: np.ndarray, n: int = BOX) -> np.ndarray:
    c = np.floor(centre_vox + 0.5).astype(int)
    return data[tuple(slice(int(k) - n // 2, int(k) - n // 2 + n) for k in c)]


# ---------------------------------------------------------------------- extract_box


@pytest.mark.parametrize("shift", ["none", "trilinear", "fourier"])
def test_integer_centre_equals_plain_slicing_for_every_kind_of_array(
    tmp_path: Path, shift: str
) -> None:
    data = tomogram_data(3)
    mm = np.memmap(
        write_mrc(tmp_path / "t.mrc", data), dtype=np.float32, mode="r", offset=1024, shape=SHAPE
    )
    za = zarr.open_group(str(write_ome_zarr(tmp_path / "t.zarr", data, levels=1)), mode="r")["0"]
    centre = (30.0, 41.0, 57.0)
    want = data[22:38, 33:49, 49:65]
    for arr in (data, mm, za):
        got, edge = extract_box(arr, centre, BOX, shift=shift)
        assert not edge
        assert got.dtype == np.float32 and got.shape == (BOX,) * 3
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 if shift == "fourier" else 0)


def test_nearest_voxel_rounds_half_up_and_odd_boxes_centre_on_the_particle() -> None:
    data = np.arange(40**3, dtype=np.float32).reshape(40, 40, 40)
    got, _ = extract_box(data, (20.49, 20.5, 19.51), 5)
    np.testing.assert_array_equal(got, data[18:23, 19:24, 18:23])
    assert got[2, 2, 2] == data[20, 21, 20]


def test_trilinear_half_voxel_is_exact_on_a_multilinear_function() -> None:
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in (40, 48, 56)), indexing="ij")
    f = lambda z, y, x: 2.0 + 0.5 * x - 0.25 * y + 0.125 * z + 0.01 * x * y * z  # noqa: E731
    data = f(z, y, x).astype(np.float32)
    centre = np.array([20.5, 23.5, 30.5])
    got, _ = extract_box(data, centre, BOX, shift="trilinear")
    k = np.arange(BOX) - BOX // 2
    zz, yy, xx = np.meshgrid(*(centre[a] + k for a in range(3)), indexing="ij")
    np.testing.assert_allclose(got, f(zz, yy, xx), rtol=1e-5)


def test_trilinear_matches_scipy_map_coordinates_at_a_random_offset() -> None:
    data = tomogram_data(4)
    centre = np.array([31.27, 40.61, 55.93])
    got, _ = extract_box(data, centre, BOX, shift="trilinear")
    k = np.arange(BOX) - BOX // 2
    grid = np.stack(np.meshgrid(*(centre[a] + k for a in range(3)), indexing="ij"))
    want = ndimage.map_coordinates(data.astype(np.float64), grid, order=1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_fourier_half_voxel_shift_of_a_periodic_wave_matches_the_analytic_value() -> None:
    n = BOX
    kz, ky, kx = 1, 2, 3  # cycles per box: band-limited and periodic in the box
    z, y, x = np.meshgrid(*(np.arange(48, dtype=np.float64) for _ in range(3)), indexing="ij")

    def f(z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.cos(2 * np.pi * (kz * z + ky * y + kx * x) / n + 0.3)

    data = f(z, y, x).astype(np.float32)
    centre = np.array([24.5, 20.5, 17.5])  # exactly half a voxel: nearest voxel rounds up
    got, _ = extract_box(data, centre, n, shift="fourier")
    k = np.arange(n) - n // 2
    zz, yy, xx = np.meshgrid(*(centre[a] + k for a in range(3)), indexing="ij")
    np.testing.assert_allclose(got, f(zz, yy, xx), atol=1e-5)
    plain, _ = extract_box(data, centre, n)
    assert np.abs(plain - f(zz, yy, xx)).max() > 0.1  # the shift matters


def test_fourier_shift_of_a_smooth_blob_is_close_to_the_analytic_value() -> None:
    z, y, x = np.meshgrid(*(np.arange(40, dtype=np.float64) for _ in range(3)), indexing="ij")
    c0 = np.array([20.3, 19.7, 20.5])

    def blob(z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.exp(-((z - c0[0]) ** 2 + (y - c0[1]) ** 2 + (x - c0[2]) ** 2) / (2 * 2.0**2))

    data = blob(z, y, x).astype(np.float32)
    got, _ = extract_box(data, c0, 24, shift="fourier")
    k = np.arange(24) - 12
    zz, yy, xx = np.meshgrid(*(c0[a] + k for a in range(3)), indexing="ij")
    np.testing.assert_allclose(got, blob(zz, yy, xx), atol=2e-4)
    assert got[12, 12, 12] == pytest.approx(1.0, abs=2e-4)  # the particle is at the box centre


def test_edge_boxes_are_filled_with_the_inside_mean_or_zero() -> None:
    data = np.random.default_rng(0).standard_normal((20, 20, 20)).astype(np.float32) + 5.0
    got, edge = extract_box(data, (2.0, 10.0, 18.0), 8)  # reaches 2 past z=0 and x=19
    assert edge
    inside = data[0:6, 6:14, 14:20]
    np.testing.assert_array_equal(got[2:, :, :6], inside)
    assert got[0, 0, 7] == pytest.approx(float(inside.mean(dtype=np.float64)))
    zero, _ = extract_box(data, (2.0, 10.0, 18.0), 8, fill="zero")
    assert zero[0, 0, 0] == 0.0 and zero[1, 3, 7] == 0.0
    np.testing.assert_array_equal(zero[2:, :, :6], inside)


def test_extract_box_rejects_unknown_modes() -> None:
    data = np.zeros((8, 8, 8), dtype=np.float32)
    with pytest.raises(ConfigError, match="shift must be one of"):
        extract_box(data, (4, 4, 4), 4, shift="cubic")
    with pytest.raises(ConfigError, match="fill must be"):
        extract_box(data, (4, 4, 4), 4, fill="nan")


# ---------------------------------------------------------------------- the pool


def test_pool_items_equal_slices_of_mrc_and_zarr_tomograms(pool: TomogramPool) -> None:
    table = pool.particles
    assert pool.ids == list(table["id"]) and pool.ids[0] == "TS_01:000000"
    assert pool.box == (BOX,) * 3 and pool.voxel_size == VOXEL and len(pool) == 24
    for i in (0, 5, 12, 23):
        r = table.iloc[i]
        data = tomogram_data(0 if r["tomo"] == "TS_01" else 1)
        want = _slice(data, np.array([r["z"], r["y"], r["x"]]) / VOXEL)
        np.testing.assert_array_equal(pool.read(i), want)
        assert pool[i].shape == (1, BOX, BOX, BOX)
    assert isinstance(pool._arrays[0], np.memmap)
    assert isinstance(pool._arrays[1].array, zarr.Array)  # read through the chunk cache


def test_every_pool_satisfies_the_pool_protocol(pool: TomogramPool, tmp_path: Path) -> None:
    folder = tmp_path / "subtomos"
    for i in range(3):
        write_volume(folder / f"v{i}.mrc", np.zeros((BOX,) * 3, dtype=np.float32), voxel_size=4.0)
    vp = VolumePool.from_directory(folder)
    pi = PoolIndex.from_directory(folder)
    for p in (pool, vp, pi):
        assert isinstance(p, Pool)
        assert len(p.checksum(0)) == 40
    assert vp.checksum(1) == pi.checksum(1)
    assert not isinstance(np.zeros(3), Pool)


def test_pool_pickles_without_its_open_tomograms_and_reads_the_same(pool: TomogramPool) -> None:
    first = pool.read(3)
    clone = pickle.loads(pickle.dumps(pool))
    assert clone._arrays == {}
    np.testing.assert_array_equal(clone.read(3), first)
    loader = torch.utils.data.DataLoader(pool.dataset(), batch_size=8, num_workers=1)
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (24, 1, BOX, BOX, BOX)
    np.testing.assert_array_equal(xs[3, 0].numpy(), first)


def test_checksum_is_stable_and_changes_with_coordinates_or_tomograms(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    table = particles_table(ts.shapes())
    a = TomogramPool(ts, table, BOX)
    b = TomogramPool(open_tomograms(tomo_dir), table.copy(), BOX)
    assert [a.checksum(i) for i in range(24)] == [b.checksum(i) for i in range(24)]
    moved = table.copy()
    moved.loc[2, "x"] += 5.0
    c = TomogramPool(ts, moved, BOX)
    assert c.checksum(2) != a.checksum(2) and c.checksum(3) == a.checksum(3)
    assert TomogramPool(ts, table, BOX + 2).checksum(0) != a.checksum(0)
    data = tomogram_data(0)
    data[32, 48, 48] += 1.0
    write_mrc(tomo_dir / "TS_01.mrc", data)
    d = TomogramPool(open_tomograms(tomo_dir), table, BOX)
    assert d.checksum(0) != a.checksum(0) and d.checksum(12) == a.checksum(12)


def test_edge_particles_are_padded_or_refused_with_a_reason(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    table = particles_table(ts.shapes(), per_tomo=3)
    table.loc[0, "x"] = 2.0 * VOXEL  # 6 voxels short of a 16-voxel box on x
    padded = TomogramPool(ts, table, BOX)
    assert padded.edge_report().per_tomogram == {"TS_01": (3, 1), "TS_02": (3, 0)}
    box = padded.read(0)
    r = table.iloc[0]
    c = np.floor(np.array([r["z"], r["y"], r["x"]]) / VOXEL + 0.5).astype(int)
    inside = tomogram_data(0)[c[0] - 8 : c[0] + 8, c[1] - 8 : c[1] + 8, 0 : c[2] + 8]
    np.testing.assert_array_equal(box[:, :, 6:], inside)
    assert box[0, 0, 0] == pytest.approx(float(inside.mean(dtype=np.float64)), rel=1e-5)
    refused = TomogramPool(ts, table, BOX, edge="refuse")
    assert len(refused) == 5 and "TS_01:000000" not in refused.ids
    reason = refused.refused["TS_01:000000"]
    assert "reaches 6 voxel(s) past the tomogram edge along x" in reason
    assert refused.edge_report().n_edge == 1


def test_coordinate_outside_the_tomogram_is_an_error_naming_the_particle(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    table = particles_table(ts.shapes(), per_tomo=3)
    table.loc[4, "y"] = SHAPE[1] * VOXEL + 50.0
    with pytest.raises(
        InvalidVolumeError, match=r"1 of 6 particles lie outside .*TS_02:000001"
    ) as exc:
        TomogramPool(ts, table, BOX)
    assert "--units" not in str(exc.value)  # one stray particle: no units hint


def test_angstrom_read_as_pixels_gets_a_units_hint(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    table = particles_table(ts.shapes(), per_tomo=3)
    for a in "xyz":
        table[a] = table[a] * VOXEL  # Å values multiplied by the pixel size once more
    with pytest.raises(InvalidVolumeError, match=r"Å read as pixels\? \(pass --units angstrom\)"):
        TomogramPool(ts, table, BOX)


def test_pixel_coordinates_read_as_angstrom_are_refused(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    table = particles_table(ts.shapes(), per_tomo=4)
    for a in "xyz":
        table[a] = table[a] / VOXEL  # pixel values taken for Å
    with pytest.raises(InvalidVolumeError, match="look like pixel coordinates read as Å"):
        TomogramPool(ts, table, BOX)
    assert len(TomogramPool(ts, table, 4, check_units=False)) == 8


def test_missing_tomogram_is_named_with_a_suggestion(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    table = particles_table({"TS_01": SHAPE, "TS_03": SHAPE}, per_tomo=2)
    with pytest.raises(
        InvalidVolumeError, match=r"no tomogram for 1 tomogram name.*'TS_03'.*did you mean"
    ):
        TomogramPool(ts, table, BOX)


def test_mixed_voxel_sizes_are_refused(tmp_path: Path) -> None:
    write_mrc(tmp_path / "TS_01.mrc", tomogram_data(0), VOXEL)
    write_mrc(tmp_path / "TS_02.mrc", tomogram_data(1), 2 * VOXEL)
    ts = open_tomograms(tmp_path)
    with pytest.raises(
        InvalidVolumeError, match=r"different voxel sizes \(TS_01 10 Å, TS_02 20 Å\)"
    ):
        TomogramPool(ts, particles_table(ts.shapes(), per_tomo=2), BOX)


def test_coordinate_pixel_size_must_match_the_tomogram(tomo_dir: Path) -> None:
    from types import SimpleNamespace

    ts = open_tomograms(tomo_dir)
    plist = SimpleNamespace(
        table=particles_table(ts.shapes(), per_tomo=2), pixel_size={"TS_01": 5.0}, source="relion4"
    )
    with pytest.raises(
        InvalidVolumeError, match=r"TS_01' refer to a 5 Å pixel but .* has 10 Å voxels"
    ):
        TomogramPool(ts, plist, BOX)


def test_empty_or_malformed_tables_are_refused(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    with pytest.raises(EmptyPoolError, match="holds no particles"):
        TomogramPool(ts, pd.DataFrame(columns=["id", "tomo", "x", "y", "z"]), BOX)
    with pytest.raises(InvalidLabelsError, match="lacks column"):
        TomogramPool(ts, pd.DataFrame({"id": ["a"], "x": [1.0]}), BOX)
    table = particles_table(ts.shapes(), per_tomo=2)
    table.loc[1, "id"] = table.loc[0, "id"]
    with pytest.raises(InvalidLabelsError, match="repeated particle id"):
        TomogramPool(ts, table, BOX)
    with pytest.raises(ConfigError, match="edge must be one of"):
        TomogramPool(ts, particles_table(ts.shapes()), BOX, edge="wrap")


def test_subset_labels_and_dataset(pool: TomogramPool) -> None:
    labels = pd.DataFrame({"id": ["TS_01:000001", "TS_02:000003"], "label": ["ribo", "empty"]})
    lab = pool.with_labels(labels)
    assert lab.labelled_indices() == [1, 15] and lab.class_names == ["empty", "ribo"]
    sub = lab.subset([15, 1])
    assert sub.ids == ["TS_02:000003", "TS_01:000001"] and sub.labels == ["empty", "ribo"]
    np.testing.assert_array_equal(sub.read(1), pool.read(1))
    x, y = lab.dataset()[15]
    assert y == 0 and x.shape == (1, BOX, BOX, BOX)
    assert pool.index_of("TS_02:000000") == 12
    with pytest.raises(InvalidLabelsError, match="not in the pool"):
        pool.index_of("TS_09:000000")


def test_relion5_picks_star_has_optics_and_centred_angstrom_coordinates(
    pool: TomogramPool, tmp_path: Path
) -> None:
    table = pd.DataFrame(
        {
            "id": ["TS_01:000002", "TS_02:000000"],
            "rank": [1, 2],
            "score": [0.9, 0.5],
            "predicted": ["ribo", "empty"],
            "p_empty": [0.1, 0.7],
            "p_ribo": [0.9, 0.3],
            "label": ["", ""],
        }
    )
    out = pool.write_picks(tmp_path / "picks.star", table)
    blocks = starfile.read(out, always_dict=True)
    assert set(blocks) == {"optics", "particles"}
    assert blocks["optics"]["rlnTomoTiltSeriesPixelSize"].tolist() == [VOXEL]
    p = blocks["particles"]
    assert p["rlnTomoName"].tolist() == ["TS_01", "TS_02"]
    nz, ny, nx = SHAPE
    src = pool.particles.set_index("id")
    for k, vid in enumerate(table["id"]):
        assert p["rlnCenteredCoordinateXAngst"][k] == pytest.approx(
            src.loc[vid, "x"] - nx * VOXEL / 2
        )
        assert p["rlnCenteredCoordinateYAngst"][k] == pytest.approx(
            src.loc[vid, "y"] - ny * VOXEL / 2
        )
        assert p["rlnCenteredCoordinateZAngst"][k] == pytest.approx(
            src.loc[vid, "z"] - nz * VOXEL / 2
        )
    assert p["rlnClassNumber"].tolist() == [2, 1]  # 1-based in (empty, ribo)
    assert p["cryoalId"].tolist() == ["TS_01:000002", "TS_02:000000"]
    assert p["cryoalRank"].tolist() == [1, 2]
    csv = pd.read_csv(pool.write_picks(tmp_path / "picks.csv", table))
    assert list(csv.columns[:5]) == ["id", "tomo", "x", "y", "z"]


def test_inverted_pool_reads_minus_the_box_and_keeps_the_flag(pool: TomogramPool) -> None:
    inv = pool.inverted()
    np.testing.assert_array_equal(inv.read(4), -pool.read(4))
    assert inv.subset([4]).invert and inv.with_labels(pd.DataFrame({"id": [], "label": []})).invert
    np.testing.assert_array_equal(inv.inverted(False).read(4), pool.read(4))
    assert inv.checksum(4) == pool.checksum(4)


# ---------------------------------------------------------------------- every source


def _coordinate_files(folder: Path, table: pd.DataFrame) -> dict[str, tuple[Path, dict]]:
    """The same particles in each format, written with starfile / dynamotable / pandas."""
    import dynamotable

    nz, ny, nx = SHAPE
    xyz = table[["x", "y", "z"]].to_numpy()
    optics = pd.DataFrame(
        {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["g1"], "rlnTomoTiltSeriesPixelSize": [VOXEL]}
    )
    r5 = pd.DataFrame({"rlnTomoName": table["tomo"], "rlnOpticsGroup": 1})
    r4 = pd.DataFrame({"rlnTomoName": table["tomo"], "rlnOpticsGroup": 1})
    for j, (a, n) in enumerate(zip("XYZ", (nx, ny, nz), strict=True)):
        r5[f"rlnCenteredCoordinate{a}Angst"] = xyz[:, j] - n * VOXEL / 2
        r4[f"rlnCoordinate{a}"] = xyz[:, j] / VOXEL
    folder.mkdir()
    starfile.write({"optics": optics, "particles": r5}, folder / "r5.star")
    starfile.write({"optics": optics, "particles": r4}, folder / "r4.star")
    number = {"TS_01": 1, "TS_02": 2}
    n = len(table)
    dynamotable.write(
        pd.DataFrame(
            {
                "tag": range(1, n + 1),
                "aligned_value": [1] * n,
                "averaged_value": [0] * n,
                "tomo": [number[t] for t in table["tomo"]],
                # Dynamo counts voxels from 1 (MATLAB)
                "x": xyz[:, 0] / VOXEL + 1,
                "y": xyz[:, 1] / VOXEL + 1,
                "z": xyz[:, 2] / VOXEL + 1,
            }
        ),
        str(folder / "p.tbl"),
    )
    (folder / "tomos.doc").write_text("1 /data/TS_01.mrc\n2 /data/TS_02.zarr\n")
    table[["tomo", "x", "y", "z"]].to_csv(folder / "angst.csv", index=False)
    px = table[["tomo"]].assign(**{a: xyz[:, j] / VOXEL for j, a in enumerate("xyz")})
    px.to_csv(folder / "px.csv", index=False)
    return {
        "relion5": (folder / "r5.star", {}),
        "relion4": (folder / "r4.star", {}),
        "dynamo": (folder / "p.tbl", {"tomo_names": folder / "tomos.doc"}),
        "csv-angstrom": (folder / "angst.csv", {"units": "angstrom"}),
        "csv-pixel": (folder / "px.csv", {"units": "pixel"}),
    }


def test_every_coordinate_format_gives_the_same_pool(tomo_dir: Path, tmp_path: Path) -> None:
    from cryoal.io.tomopool import open_tomogram_pool

    ts = open_tomograms(tomo_dir)
    table = particles_table(ts.shapes(), per_tomo=5)
    files = _coordinate_files(tmp_path / "coords", table)
    for name, (path, kw) in files.items():
        pool = open_tomogram_pool(tomo_dir, path, box=BOX, **kw)
        got = pool.item_table()
        assert got["id"].tolist() == table["id"].tolist(), name
        assert got["tomo"].tolist() == table["tomo"].tolist(), name
        np.testing.assert_allclose(
            got[["x", "y", "z"]].to_numpy(), table[["x", "y", "z"]].to_numpy(), atol=1e-3
        )
        for i in (0, 7):
            r = table.iloc[i]
            data = tomogram_data(0 if r["tomo"] == "TS_01" else 1)
            want = _slice(data, np.array([r["z"], r["y"], r["x"]]) / VOXEL)
            np.testing.assert_array_equal(pool.read(i), want, err_msg=name)
    # a Dynamo table without its tomogram list: the numbers are no tomogram names
    with pytest.raises(InvalidVolumeError, match="no tomogram for 1 tomogram name.*--tomo-list"):
        open_tomogram_pool(tomo_dir, files["dynamo"][0], box=BOX)
    with pytest.raises(ConfigError, match="names the tomogram numbers of a Dynamo .tbl"):
        open_tomogram_pool(tomo_dir, files["relion5"][0], box=BOX, tomo_names={1: "TS_01"})


def test_zarr_boxes_through_the_chunk_cache_equal_direct_slices(tmp_path: Path) -> None:
    """Boxes across chunk borders, at edges, in any order: the cached reads equal plain
    zarr slicing; each chunk is decoded once while it fits, and a small cache still gives
    the same values."""
    from cryoal.io.tomopool import _ChunkCachedArray, _ChunkLRU

    data = tomogram_data(3)
    write_ome_zarr(tmp_path / "t.zarr", data, chunks=(16, 16, 16), levels=1)
    arr = zarr.open_group(str(tmp_path / "t.zarr"), mode="r")["0"]
    n_chunks = int(np.prod([-(-s // c) for s, c in zip(arr.shape, arr.chunks, strict=True)]))
    rng = np.random.default_rng(0)
    centres = [rng.uniform(-4, np.array(SHAPE) + 4) for _ in range(40)]
    for max_bytes in (1 << 30, 3 * 16**3 * 4):  # everything fits / three chunks
        cache = _ChunkLRU(max_bytes)
        cached = _ChunkCachedArray(arr, cache, key=0)
        for c in centres:
            want, edge_a = extract_box(arr, c, BOX)
            got, edge_b = extract_box(cached, c, BOX)
            np.testing.assert_array_equal(got, want)
            assert edge_a == edge_b
        if max_bytes == 1 << 30:
            assert cache.decoded <= n_chunks
            before = cache.decoded
            extract_box(cached, centres[0], BOX)
            assert cache.decoded == before  # a repeated box decodes nothing
        else:
            assert cache._bytes <= max_bytes
    np.testing.assert_array_equal(cached[2:5, 0:96, 7:8], data[2:5, 0:96, 7:8])
    np.testing.assert_array_equal(cached[3], data[3])  # other keys: straight to zarr


def test_pool_reads_decode_each_zarr_chunk_once_in_pool_order(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    pool = TomogramPool(ts, particles_table(ts.shapes(), per_tomo=20), BOX)
    zarr_items = [i for i in range(len(pool)) if pool.ids[i].startswith("TS_02")]
    for i in zarr_items:
        pool.read(i)
    arr = pool._arrays[1].array
    n_chunks = int(np.prod([-(-s // c) for s, c in zip(arr.shape, arr.chunks, strict=True)]))
    assert pool._chunk_cache.decoded <= n_chunks < 2 * len(zarr_items)
    sub = pool.subset(zarr_items[:3])  # derived pools share the decoded chunks
    before = pool._chunk_cache.decoded
    np.testing.assert_array_equal(sub.read(0), pool.read(zarr_items[0]))
    assert pool._chunk_cache.decoded == before
    clone = pickle.loads(pickle.dumps(pool))  # a fresh, empty cache in another process
    assert clone._chunk_cache.decoded == 0
    np.testing.assert_array_equal(clone.read(zarr_items[1]), pool.read(zarr_items[1]))
