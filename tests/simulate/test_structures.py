"""The bundled structure library and user maps/models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryoal.errors import ConfigError, InvalidVolumeError
from cryoal.io import write_volume
from cryoal.simulate import (
    DEFAULT_BENCHMARK_SET,
    list_structures,
    load_structure,
    read_atoms,
    resample_map,
    structure_table,
)

BUNDLED = {
    "6ZU5", "4V8R-A", "7PBL", "7CTH", "3O21", "2NWL", "3HSY", "3ENL", "1AKE", "1UBI",
    "6MSM", "3KPR", "19HC", "1HVR", "6WG6", "7DDO", "2XHE", "4JSV", "1BD2", "3P3W",
}  # fmt: skip

PDB_TEXT = """\
ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00  0.00           N
ATOM      2  CA  ALA A   1       1.458   0.000   0.000  1.00  0.00           C
ATOM      3  C   ALA A   1       2.009   1.420   0.000  1.00  0.00           C
ATOM      4  O   ALA A   1       1.251   2.390   0.000  1.00  0.00           O
ATOM      5  H   ALA A   1      -0.500   0.800   0.000  1.00  0.00           H
ATOM      6  CB  ALA B   1       1.988  -0.773  -1.199  1.00  0.00           C
HETATM    7  O   HOH A   2      10.000  10.000  10.000  1.00  0.00           O
HETATM    8  DUM DUM C   3      20.000  20.000  20.000  1.00  0.00           N
END
"""


def _centroid(m: np.ndarray) -> np.ndarray:
    idx = np.indices(m.shape).reshape(3, -1)
    w = np.clip(m.ravel(), 0, None)
    return (idx * w).sum(axis=1) / w.sum()


def test_library_lists_all_real_structures_with_provenance() -> None:
    assert set(list_structures()) == BUNDLED
    table = structure_table()
    for col in ("pdb_id", "source_package", "source_path", "atoms", "mass_kda", "extent_nm"):
        assert col in table.columns
    assert set(DEFAULT_BENCHMARK_SET) <= BUNDLED and len(DEFAULT_BENCHMARK_SET) == 10
    masses = table.set_index("name").loc[list(DEFAULT_BENCHMARK_SET), "mass_kda"]
    assert masses.min() == pytest.approx(43.4, abs=0.5)  # enolase
    assert masses.max() == pytest.approx(2296, rel=0.01)  # 80S ribosome
    assert table.set_index("name").loc["6ZU5", "extent_nm"] == pytest.approx(27, abs=1)


@pytest.mark.parametrize("voxel_size", [5.0, 10.0])
def test_bundled_maps_are_centred_float32(voxel_size: float) -> None:
    s = load_structure("7pbl", voxel_size)
    assert s.name == "7PBL" and s.density.dtype == np.float32 and s.voxel_size == voxel_size
    assert all(n % 2 == 0 for n in s.density.shape)
    np.testing.assert_allclose(_centroid(s.density), [n // 2 for n in s.density.shape], atol=1.0)


def test_box_pads_and_crops_around_the_centre() -> None:
    s = load_structure("3ENL", 10.0)
    big = load_structure("3ENL", 10.0, box=40)
    assert big.density.shape == (40, 40, 40)
    assert big.density.sum() == pytest.approx(s.density.sum(), rel=1e-5)
    np.testing.assert_allclose(_centroid(big.density), [20, 20, 20], atol=1.0)
    small = load_structure("6ZU5", 10.0, box=16)
    assert small.density.shape == (16, 16, 16)


def test_other_voxel_sizes_are_resampled_keeping_mass() -> None:
    ref = load_structure("4V8R-A", 5.0)
    s = load_structure("4V8R-A", 8.0)
    assert s.density.sum() == pytest.approx(ref.density.sum(), rel=1e-4)
    # the 5 Å map resampled to 10 Å matches the bundled 10 Å map
    down = resample_map(ref.density, 5.0, 10.0)
    ten = load_structure("4V8R-A", 10.0, box=down.shape[0]).density
    corr = np.corrcoef(down.ravel(), ten.ravel())[0, 1]
    assert corr > 0.95


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="unknown structure '6ZU6'.*Did you mean 6ZU5"):
        load_structure("6ZU6", 10.0)


def test_pdb_file_reads_with_gemmi(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pdb"
    path.write_text(PDB_TEXT)
    atoms = read_atoms(path)
    # H, water and DUM dropped by default
    assert list(atoms.elements) == ["N", "C", "C", "O", "C"]
    assert atoms.chains == ("A", "B")
    assert atoms.mass_kda == pytest.approx((14.0067 + 3 * 12.0107 + 15.9994) / 1000, rel=1e-3)
    assert list(read_atoms(path, chain_prefix="B").elements) == ["C"]
    s = load_structure(path, 4.0, box=16, method="gaussian")
    assert s.name == "tiny" and s.density.shape == (16, 16, 16)
    assert s.density.sum() == pytest.approx(7 + 6 * 3 + 8, rel=1e-3)


def test_mrc_map_is_read_and_resampled(tmp_path: Path) -> None:
    src = load_structure("3ENL", 5.0).density
    path = write_volume(tmp_path / "enolase.mrc", src, 5.0)
    s = load_structure(path, 10.0, box=20)
    assert s.name == "enolase" and s.density.shape == (20, 20, 20)
    assert s.density.sum() == pytest.approx(src.sum(), rel=1e-3)


def test_bad_model_file_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdb"
    path.write_text("REMARK nothing here\nEND\n")
    with pytest.raises(InvalidVolumeError, match="empty.pdb: no atoms left"):
        read_atoms(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_structure(tmp_path / "missing.cif", 10.0)


def test_model_files_without_gemmi_raise_missing_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from cryoal.errors import MissingDependencyError

    path = tmp_path / "tiny.pdb"
    path.write_text(PDB_TEXT)
    monkeypatch.setitem(sys.modules, "gemmi", None)  # what an environment without gemmi sees
    with pytest.raises(MissingDependencyError, match=r"pip install 'cryoal\[structures\]'"):
        load_structure(path, 10.0)
    # bundled maps need no gemmi
    assert load_structure("1UBI", 10.0).density.size > 0
