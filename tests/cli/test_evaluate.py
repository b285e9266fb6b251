"""``cryoal evaluate picks``: the CZII F-beta table from particle files, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.simulate import SimulatedCopickProject
from cryoal.tasks.particle_metrics import pick_fbeta


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_relion_picks_against_the_truth(sim_copick: SimulatedCopickProject) -> None:
    assert sim_copick.relion is not None
    code, out, err = _run(
        "evaluate",
        "picks",
        "--truth",
        str(sim_copick.root / "truth.csv"),
        "--units",
        "angstrom",
        "--pred",
        str(sim_copick.relion / "particles.star"),
        "--tomograms",
        str(sim_copick.relion / "tomograms.star"),
        "--copick",
        str(sim_copick.config),
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "class", "radius", "weight", "true", "pred", "TP", "FP", "FN", "precision", "recall", "F4"
    ]  # fmt: skip
    assert lines[1].split() == [
        "ribosome", "139.6", "1", "10", "10", "10", "0", "0", "1.000", "1.000", "1.000"
    ]  # fmt: skip
    assert len(lines) == 8
    assert lines[-1] == "score (weighted mean F4, hit within 0.5 x radius): 1.0000"


def test_imperfect_picks_match_the_library(
    sim_copick: SimulatedCopickProject, tmp_path: Path
) -> None:
    truth = sim_copick.particles
    pred = truth.iloc[::2].copy()  # half of the particles...
    pred = pd.concat([pred, pred.head(4)], ignore_index=True)  # ... 4 twice
    pred.loc[pred.index[:6], "x"] += 45.0  # 6 moved by 45 Å: within reach of some classes
    pred["id"] = [f"p{i}" for i in range(len(pred))]
    pred_csv = tmp_path / "pred.csv"
    pred.to_csv(pred_csv, index=False)
    out_csv = tmp_path / "scores.csv"
    code, out, err = _run(
        "evaluate", "picks", "--truth", str(sim_copick.root / "truth.csv"), "--pred",
        str(pred_csv), "--units", "angstrom", "--copick", str(sim_copick.config),
        "--weight", "ribosome=0", "--out", str(out_csv),
    )  # fmt: skip
    assert code == 0, err
    radii = dict(zip(sim_copick.objects["name"], sim_copick.objects["radius"], strict=True))
    want = pick_fbeta(truth, pred, radii, weights={"ribosome": 0})
    assert (
        out.splitlines()[-2]
        == f"score (weighted mean F4, hit within 0.5 x radius): {want.score:.4f}"
    )
    assert 0 < want.score < 1
    written = pd.read_csv(out_csv)
    pd.testing.assert_frame_equal(written, want.per_class, check_dtype=False)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "Error: give the particle radii: --radius NAME=Å, --copick CONFIG or --czii"),
        (("--radius", "ribosome:150"), "Error: --radius 'ribosome:150': expected NAME=NUMBER"),
        (("--radius", "ribosome=150"), "Error: truth: no radius for class(es) chaperonin"),
        (("--czii", "--label-column", "kind"), "no class column kind"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    sim_copick: SimulatedCopickProject, extra: tuple[str, ...], message: str
) -> None:
    truth = str(sim_copick.root / "truth.csv")
    code, _, err = _run(
        "evaluate", "picks", "--truth", truth, "--pred", truth, "--units", "angstrom", *extra
    )
    assert code == 2
    (line,) = err.strip().splitlines()
    assert message in line


def test_predictions_star_is_scored_by_class_name_not_number(
    sim_copick: SimulatedCopickProject, tmp_path: Path
) -> None:
    """A ``cryoal predict`` STAR has rlnClassNumber and cryoalPredicted: the names are the
    classes; a picks CSV's empty label column gives way to its predicted column."""
    from cryoal.io import ParticleList, write_relion

    assert sim_copick.relion is not None
    truth = sim_copick.particles
    classes = sorted(set(truth["label"]))
    table = truth[["id", "tomo", "x", "y", "z"]].assign(predicted=truth["label"].to_numpy())
    star = write_relion(
        tmp_path / "classes.star",
        ParticleList(table, dict.fromkeys(truth["tomo"], sim_copick.voxel_size), "cryoal"),
        tomograms=sim_copick.relion / "tomograms.star",
        class_numbers=classes,
        class_column="predicted",
    )
    picks = tmp_path / "picks.csv"
    table.assign(label="").to_csv(picks, index=False)
    common = ["--truth", str(sim_copick.root / "truth.csv"), "--units", "angstrom"]
    common += ["--tomograms", str(sim_copick.relion / "tomograms.star")]
    common += ["--copick", str(sim_copick.config)]
    for pred in (star, picks):
        code, out, err = _run("evaluate", "picks", *common, "--pred", str(pred))
        assert code == 0, err
        assert out.splitlines()[-1].endswith(": 1.0000"), out
