"""Labels tables: CSV and STAR round trips, RELION names, and every validation error."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import starfile

from cryoal.errors import InvalidLabelsError
from cryoal.io import read_labels, read_table, validate_labels, write_labels, write_table


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _csv(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_roundtrip_keeps_extra_columns(tmp_path: Path):
    df = pd.DataFrame(
        {
            "id": ["a.mrc", "s.mrcs#3"],
            "label": ["007", "NA-ribo"],
            "score": [0.25, None],
            "who": ["x", "y"],
        }
    )
    path = write_labels(tmp_path / "out.csv", df)
    assert path.read_text().splitlines()[0] == "id,label,score,who"
    back = read_labels(path)
    assert list(back.columns) == ["id", "label", "score", "who"]
    assert back["label"].tolist() == ["007", "NA-ribo"]  # strings stay strings
    assert back["score"].iloc[0] == 0.25 and pd.isna(back["score"].iloc[1])
    assert back["who"].tolist() == ["x", "y"]


def test_csv_strips_whitespace(tmp_path: Path):
    path = _csv(tmp_path, "id, label\n a.mrc , ribosome \n")
    assert read_labels(path)[["id", "label"]].values.tolist() == [["a.mrc", "ribosome"]]


def test_star_roundtrip_uses_relion_names(tmp_path: Path):
    df = pd.DataFrame(
        {
            "id": ["a.mrc", "p/stack.mrcs#4"],
            "label": ["1", "2"],
            "score": [0.5, 0.25],
            "rank": [1, 2],
            "prob_ribosome": [0.9, 0.1],
        }
    )
    path = write_table(tmp_path / "picks.star", df)
    raw = starfile.read(path)
    assert list(raw.columns) == [
        "rlnImageName",
        "cryoalLabel",
        "cryoalScore",
        "cryoalRank",
        "cryoalProb_ribosome",
    ]
    assert raw["rlnImageName"].tolist() == ["a.mrc", "000005@p/stack.mrcs"]
    back = read_table(path)
    assert list(back.columns) == list(df.columns)
    assert back["id"].tolist() == df["id"].tolist()
    assert back["label"].tolist() == ["1", "2"]
    assert back["rank"].tolist() == [1, 2]
    assert back["prob_ribosome"].tolist() == pytest.approx([0.9, 0.1])


def test_star_with_optics_block_and_rln_columns(tmp_path: Path):
    path = tmp_path / "particles.star"
    starfile.write(
        {
            "optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0]}),
            "particles": pd.DataFrame(
                {
                    "rlnImageName": ["000001@Extract/t1.mrcs", "000002@Extract/t1.mrcs"],
                    "rlnCoordinateX": [10.0, 20.0],
                    "cryoalLabel": ["ribosome", "proteasome"],
                }
            ),
        },
        path,
    )
    df = read_labels(path)
    assert df["id"].tolist() == ["Extract/t1.mrcs#0", "Extract/t1.mrcs#1"]
    assert df["rlnCoordinateX"].tolist() == [10.0, 20.0]
    assert df["label"].tolist() == ["ribosome", "proteasome"]


def test_missing_columns(tmp_path: Path):
    path = _csv(tmp_path, "name,class\na.mrc,x\n")
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(
            f"{path}: missing column(s) id, label; found name, class; "
            "a labels CSV starts with the header line 'id,label'"
        ),
    ):
        read_labels(path)


def test_empty_labels_list_rows(tmp_path: Path):
    path = _csv(tmp_path, "id,label\na.mrc,x\nb.mrc,\nc.mrc,  \n")
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(
            f"{path}: 2 of 3 rows have an empty label: line 3 (id 'b.mrc'); line 4 (id 'c.mrc')"
        ),
    ):
        read_labels(path)
    df = read_labels(path, require_labels=False)
    assert df["label"].tolist() == ["x", None, None]


def test_duplicate_ids(tmp_path: Path):
    path = _csv(tmp_path, "id,label\na.mrc,x\nb.mrc,y\na.mrc,z\n")
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(f"{path}: 1 of 3 rows repeat an earlier id: line 4 'a.mrc' (first at line 2)"),
    ):
        read_labels(path)


def test_unknown_ids_list_first_five(tmp_path: Path):
    rows = "".join(f"bad{i}.mrc,x\n" for i in range(7))
    path = _csv(tmp_path, "id,label\nok.mrc,x\n" + rows)
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(
            f"{path}: 7 of 8 rows have an id not in the pool: line 3 'bad0.mrc'; line 4 'bad1.mrc'; "
            "line 5 'bad2.mrc'; line 6 'bad3.mrc'; line 7 'bad4.mrc' (and 2 more); "
            "pool ids look like 'ok.mrc'"
        ),
    ):
        read_labels(path, known_ids={"ok.mrc"})


def test_empty_id_in_dataframe_uses_row_numbers():
    df = pd.DataFrame({"id": ["a.mrc", None], "label": ["x", "y"]})
    with pytest.raises(
        InvalidLabelsError, match=_exact("labels table: 1 of 2 rows have an empty id: row 2")
    ):
        validate_labels(df)


def test_bad_files(tmp_path: Path):
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(
            f"{tmp_path / 'labels.xlsx'}: unknown table extension '.xlsx'; use .csv or .star"
        ),
    ):
        read_labels(tmp_path / "labels.xlsx")
    with pytest.raises(InvalidLabelsError, match=_exact(f"{tmp_path / 'no.csv'}: file not found")):
        read_labels(tmp_path / "no.csv")
    empty = _csv(tmp_path, "", "empty.csv")
    with pytest.raises(
        InvalidLabelsError,
        match=_exact(f"{empty}: empty file; a labels CSV starts with 'id,label'"),
    ):
        read_labels(empty)


def test_write_labels_validates(tmp_path: Path):
    with pytest.raises(InvalidLabelsError, match="1 of 2 rows repeat an earlier id: row 2 'a' "):
        write_labels(tmp_path / "x.csv", pd.DataFrame({"id": ["a", "a"], "label": ["x", "y"]}))
    assert not (tmp_path / "x.csv").exists()
