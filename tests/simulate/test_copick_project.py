"""simulate_copick_project: a copick project that copick opens, true picks, RELION 5 copies.

The session fixture ``sim_copick`` (tests/conftest.py) is read with copick, zarr, mrcfile
and starfile; RELION coordinates are checked against copick's own RELION converter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import copick
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
import zarr

from cryoal.errors import ConfigError
from cryoal.simulate import COPICK_OBJECTS, SimulatedCopickProject, simulate_copick_project
from cryoal.transforms import matrix_to_euler

TWO = {"ruvab": "7PBL", "enolase": "3ENL"}


def _level0(project: SimulatedCopickProject, run: str) -> np.ndarray:
    root = copick.from_file(str(project.config))
    (tomo,) = root.get_run(run).get_voxel_spacing(10.0).get_tomograms("wbp")
    return np.asarray(zarr.open(tomo.zarr(), mode="r")["0"][:])


def _picks(project: SimulatedCopickProject) -> pd.DataFrame:
    """Every true pick read back with copick: tomo, label, x, y, z (Å), 3x3 rotation."""
    root = copick.from_file(str(project.config))
    rows = []
    for run in root.runs:
        for picks in run.get_picks(user_id="curation", session_id="0"):
            points, transforms = picks.numpy()
            for p, t in zip(points, transforms, strict=True):
                rows.append(
                    {
                        "tomo": run.name,
                        "label": picks.pickable_object_name,
                        "x": p[0],
                        "y": p[1],
                        "z": p[2],
                        "R": t[:3, :3],
                        "shift": t[:3, 3],
                    }
                )
    return pd.DataFrame(rows)


def test_copick_opens_the_project(sim_copick: SimulatedCopickProject) -> None:
    root = copick.from_file(str(sim_copick.config))
    objects = {o.name: o for o in root.pickable_objects}
    assert list(objects) == [*COPICK_OBJECTS, "particle"]  # + the candidates' object
    assert [o.label for o in objects.values()] == [1, 2, 3, 4, 5, 6, 7]
    assert all(o.is_particle for o in objects.values())
    assert objects["ribosome"].radius == pytest.approx(139.6)
    assert objects["enolase"].radius == pytest.approx(37.4)
    assert objects["ribosome"].pdb_id == "6ZU5"
    assert sorted(r.name for r in root.runs) == ["TS_001", "TS_002"] == sim_copick.runs
    config = json.loads(sim_copick.config.read_text())
    assert config["config_type"] == "filesystem"
    assert config["overlay_root"] == f"local://{sim_copick.root / 'overlay'}"


def test_tomograms_are_ome_zarr_multiscale(sim_copick: SimulatedCopickProject) -> None:
    root = copick.from_file(str(sim_copick.config))
    for run in root.runs:
        assert [vs.voxel_size for vs in run.voxel_spacings] == [10.0]
        (tomo,) = run.get_voxel_spacing(10.0).get_tomograms("wbp")
        group = zarr.open(tomo.zarr(), mode="r")
        assert sorted(group.array_keys()) == ["0", "1", "2"]
        assert group["0"].shape == (64, 96, 96) and group["0"].dtype == np.float32
        assert group["1"].shape == (32, 48, 48) and group["2"].shape == (16, 24, 24)
        datasets = group.attrs["multiscales"][0]["datasets"]
        scales = [d["coordinateTransformations"][0]["scale"] for d in datasets]
        assert scales == [[10.0] * 3, [20.0] * 3, [40.0] * 3]
        level0 = np.asarray(group["0"][:])
        assert np.isfinite(level0).all() and level0.std() > 0
        # the pyramid is the local mean: level 1 = 2x2x2 block means of level 0
        blocks = level0.reshape(32, 2, 48, 2, 48, 2).mean(axis=(1, 3, 5))
        np.testing.assert_allclose(group["1"][:], blocks, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(_level0(sim_copick, "TS_001"), _level0(sim_copick, "TS_002"))


def test_picks_read_back_match_the_truth(sim_copick: SimulatedCopickProject) -> None:
    picks = _picks(sim_copick)
    truth = sim_copick.particles
    assert len(picks) == len(truth) == 2 * 6 * 5
    assert picks.groupby(["tomo", "label"]).size().eq(5).all()
    assert (sim_copick.objects["count"] == 10).all()
    key = ["tomo", "label", "x", "y", "z"]
    merged = picks.merge(truth, on=key, how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    # centres on the voxel grid, inside the volume by at least the particle radius
    xyz = picks[["x", "y", "z"]].to_numpy() / 10.0
    np.testing.assert_allclose(xyz, np.rint(xyz))
    radius = merged["radius"].to_numpy() / 10.0
    upper = np.array([96, 96, 64]) - 1
    assert (xyz >= radius[:, None] - 0.5).all() and (xyz <= upper - radius[:, None] + 0.5).all()
    # rotations: the truth's RELION angles, no shift
    angles = matrix_to_euler(torch.from_numpy(np.stack(merged["R"].to_numpy())))
    np.testing.assert_allclose(angles.numpy(), merged[["rot", "tilt", "psi"]].to_numpy(), atol=1e-4)
    assert np.allclose(np.stack(merged["shift"].to_numpy()), 0)
    # the truth table on disk is the same
    on_disk = pd.read_csv(sim_copick.root / "truth.csv")
    assert on_disk["id"].tolist() == truth["id"].tolist()
    np.testing.assert_allclose(on_disk[["x", "y", "z"]], truth[["x", "y", "z"]])


def test_candidate_picks_are_every_particle_shuffled_and_off_centre(
    sim_copick: SimulatedCopickProject,
) -> None:
    from scipy.spatial import cKDTree

    assert sim_copick.candidates == ("particle", "picker")
    root = copick.from_file(str(sim_copick.config))
    for run in root.runs:
        (picks,) = run.get_picks(object_name="particle", user_id="picker")
        points, _ = picks.numpy()
        truth = sim_copick.particles[sim_copick.particles["tomo"] == run.name]
        assert len(points) == len(truth)
        dist, nearest = cKDTree(truth[["x", "y", "z"]].to_numpy()).query(points)
        assert sorted(nearest) == list(range(len(truth)))  # one candidate per particle
        assert 0 < dist.min() and dist.max() < 25.0  # sigma 5 Å per axis
        assert list(nearest) != sorted(nearest)  # not in the truth's order


def test_particles_do_not_overlap(sim_copick: SimulatedCopickProject) -> None:
    for _, run in sim_copick.particles.groupby("tomo"):
        xyz = run[["x", "y", "z"]].to_numpy()
        r = run["radius"].to_numpy()
        dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        need = r[:, None] + r[None] + 10.0 - 0.5  # one voxel gap, radii rounded
        np.fill_diagonal(dist, np.inf)
        assert (dist >= need).all()


def test_signal_sits_at_the_picks(sim_copick: SimulatedCopickProject) -> None:
    """Voxels within the particle spheres vary more than the rest (signal + noise vs noise).

    Swapping x and z, or an offset of a few voxels, would break this.
    """
    zz, yy, xx = np.indices((64, 96, 96), dtype=np.float64)

    def ratio(vol: np.ndarray, table: pd.DataFrame, axes: str) -> float:
        inside = np.zeros(vol.shape, dtype=bool)
        for p in table.itertuples():
            x, y, z = (getattr(p, a) / 10 for a in axes)
            inside |= (xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2 <= (0.6 * p.radius / 10) ** 2
        return float(vol[inside].var() / vol[~inside].var())

    for run, table in sim_copick.particles.groupby("tomo"):
        vol = _level0(sim_copick, str(run))
        right = ratio(vol, table, "xyz")
        assert right > 2.0
        assert right > 1.5 * ratio(vol, table, "zyx")  # x and z swapped
        assert right > 1.5 * ratio(vol, table, "yxz")  # x and y swapped


def test_relion_copies_agree_with_copick(sim_copick: SimulatedCopickProject) -> None:
    from copick.util.formats import build_relion_particles_df, read_relion_tomograms

    assert sim_copick.relion is not None
    tomograms = read_relion_tomograms(str(sim_copick.relion / "tomograms.star"))
    assert set(tomograms) == {"TS_001", "TS_002"}
    assert tomograms["TS_001"].center_angstrom == (480.0, 480.0, 320.0)
    assert tomograms["TS_001"].tilt_series_pixel_size == 10.0
    star = starfile.read(sim_copick.relion / "particles.star")
    assert set(star) == {"general", "optics", "particles"}
    particles = star["particles"]
    assert len(particles) == len(sim_copick.particles)
    picks = _picks(sim_copick)
    for (run, label), group in picks.groupby(["tomo", "label"]):
        transforms = np.tile(np.eye(4), (len(group), 1, 1))
        transforms[:, :3, :3] = np.stack(group["R"].to_numpy())
        reference = build_relion_particles_df(
            group[["x", "y", "z"]].to_numpy(),
            transforms,
            tomo_name=str(run),
            tomogram_center=tomograms[str(run)].center_angstrom,
            coordinates="centered",
        )
        ours = particles[(particles["rlnTomoName"] == run) & (particles["cryoalLabel"] == label)]
        cols = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
        order = np.lexsort(reference[cols].to_numpy().T)
        mine = np.lexsort(ours[cols].to_numpy().T)
        np.testing.assert_allclose(ours[cols].to_numpy()[mine], reference[cols].to_numpy()[order])
        angles = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
        np.testing.assert_allclose(
            ours[angles].to_numpy()[mine], reference[angles].to_numpy()[order], atol=1e-3
        )
        label_number = COPICK_OBJECTS_LABEL[str(label)]
        assert (ours["rlnClassNumber"] == label_number).all()
    for run in sim_copick.runs:
        path = sim_copick.relion / "tomograms" / f"{run}.mrc"
        with mrcfile.open(path, permissive=False) as mrc:
            assert float(mrc.voxel_size.x) == pytest.approx(10.0)
            np.testing.assert_array_equal(mrc.data, _level0(sim_copick, run))


COPICK_OBJECTS_LABEL = {name: i + 1 for i, name in enumerate(COPICK_OBJECTS)}


def _small(out: Path, seed: int, **kw: object) -> SimulatedCopickProject:
    args: dict[str, object] = {"shape": (32, 40, 40), "n_per_class": 3, "objects": TWO}
    args.update(kw)
    return simulate_copick_project(out, seed=seed, **args)  # type: ignore[arg-type]


def _files(root: Path) -> dict[str, object]:
    """Every file's bytes; a zarr array's decoded content (compressed chunks vary)."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        chunk = any(part.endswith(".zarr") for part in rel.parts[:-1]) and p.name[0] != "."
        if p.name == ".zarray":
            out[str(rel)] = zarr.open(str(p.parent), mode="r")[:].tobytes()
        elif p.is_file() and not chunk and p.name != "config.json":
            out[str(rel)] = p.read_bytes()  # config.json, the run record, holds the time
    return out


def test_same_seed_same_project(tmp_path: Path) -> None:
    a = _files(_small(tmp_path / "a", 5).root)
    b = _files(_small(tmp_path / "b", 5).root)
    c = _files(_small(tmp_path / "c", 6).root)
    config = "copick_config.json"
    assert a.pop(config).replace(b"/a/", b"/b/") == b.pop(config)  # type: ignore[attr-defined]
    assert a == b
    c.pop(config)
    assert a.keys() == c.keys() and a != c
    assert "overlay/ExperimentRuns/TS_002/Picks/curation_0_enolase.json" in a
    assert "overlay/ExperimentRuns/TS_002/VoxelSpacing10.000/wbp.zarr/1/.zarray" in a


def test_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(starfile, "write", interrupt)  # the last files of a build
    with pytest.raises(KeyboardInterrupt):
        _small(tmp_path / "p", 0, relion=True)
    assert os.listdir(tmp_path) == []
    # an existing project survives an interrupted overwrite
    monkeypatch.undo()
    first = _small(tmp_path / "p", 0)
    before = _files(first.root)
    monkeypatch.setattr(starfile, "write", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _small(tmp_path / "p", 1, relion=True, overwrite=True)
    assert os.listdir(tmp_path) == ["p"] and _files(first.root) == before
    monkeypatch.undo()
    second = _small(tmp_path / "p", 1, relion=True, overwrite=True)
    assert os.listdir(tmp_path) == ["p"] and (second.root / "relion" / "particles.star").exists()
    assert _files(second.root) != before


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"n_tomograms": 0}, "n_tomograms must be >= 1"),
        ({"objects": {"my_object": "7PBL"}}, "'my_object' is not a valid copick name"),
        ({"user_id": "a b"}, "user_id 'a b' is not a valid copick name"),
        ({"n_per_class": [1, 2, 3]}, "n_per_class must be an int >= 0 or one per object (2)"),
        ({"shape": (12, 12, 12)}, "does not fit"),
        ({"voxel_size": -1.0}, "voxel_size must be a positive"),
    ],
)
def test_bad_arguments_raise_config_error(
    tmp_path: Path, kw: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _small(tmp_path / "p", 0, **kw)
    assert os.listdir(tmp_path) == []


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        _small(tmp_path / "p", 0)
    assert os.listdir(tmp_path / "p") == ["keep.txt"]
