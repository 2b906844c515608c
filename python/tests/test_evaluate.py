import json

import numpy as np
import pandas as pd
import pytest

import cxrlearn


def _predictions(seed=0, n_patients=80, labels=("Effusion", "Edema", "Mass")):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        films = rng.integers(1, 4)
        truth = rng.integers(0, 2, len(labels))
        sex = "F" if p % 2 else "M"
        for f in range(films):
            for j, lab in enumerate(labels):
                target = "" if rng.random() < 0.05 else int(truth[j])
                score = float(1 / (1 + np.exp(-(truth[j] * 1.5 + rng.normal()))))
                rows.append((f"p{p}_f{f}", lab, target, score, f"p{p}", sex))
    return pd.DataFrame(rows, columns=["id", "label", "target", "score", "patient_id", "sex"])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    model, base = _predictions(0), _predictions(0)
    rng = np.random.default_rng(9)
    base["score"] = np.clip(base["score"] + rng.normal(0, 0.3, len(base)), 0, 1)
    model.to_csv(d / "model.csv", index=False)
    base.to_csv(d / "base.csv", index=False)
    return d, model, base


def test_evaluate_equals_the_cli_evaluation_json(files, cli, tmp_path):
    d, _, _ = files
    out = tmp_path / "cli"
    cli("evaluate", "--predictions", str(d / "model.csv"), "--baseline", str(d / "base.csv"),
        "--bootstrap", "200", "--seed", "5", "--subgroups", "sex", "--subgroup-min", "3",
        "--out", str(out))
    expected = json.loads((out / "evaluation.json").read_text())
    got = cxrlearn.evaluate(d / "model.csv", d / "base.csv", bootstrap=200, seed=5,
                            subgroups=["sex"], subgroup_min=3)
    assert got.to_dict() == expected
    assert got["resample"] == "patient" and got["subgroups"]


def test_evaluate_matches_sklearn_and_reads_dataframes_and_arrays(files):
    from sklearn.metrics import roc_auc_score

    d, model, base = files
    from_file = cxrlearn.evaluate(d / "model.csv", bootstrap=100, seed=1)
    from_frame = cxrlearn.evaluate(model, bootstrap=100, seed=1)
    labels = list(dict.fromkeys(model["label"]))
    wide_t = model.pivot(index="id", columns="label", values="target")
    wide_s = model.pivot(index="id", columns="label", values="score")
    ids = list(dict.fromkeys(model["id"]))
    wide_t, wide_s = wide_t.loc[ids, labels], wide_s.loc[ids, labels]
    patients = model.drop_duplicates("id").set_index("id").loc[ids, "patient_id"]
    per_image = model.drop_duplicates("id").set_index("id").loc[ids]
    targets = wide_t.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    from_arrays = cxrlearn.evaluate(
        (targets, wide_s.to_numpy()), labels=labels, ids=ids, patient_ids=list(patients),
        columns={"sex": list(per_image["sex"])}, subgroups=["sex"], subgroup_min=3,
        bootstrap=100, seed=1,
    )
    from_file_sex = cxrlearn.evaluate(d / "model.csv", bootstrap=100, seed=1, subgroups=["sex"],
                                      subgroup_min=3)
    assert from_arrays["subgroups"] == from_file_sex["subgroups"]
    for lab_file, lab_frame, lab_arr in zip(from_file["labels"], from_frame["labels"], from_arrays["labels"]):
        sub = model[(model["label"] == lab_file["label"]) & (model["target"] != "")]
        auc = roc_auc_score(sub["target"].astype(int), sub["score"])
        assert lab_file["auc"] == pytest.approx(auc, abs=1e-12)
        assert lab_frame["auc"] == lab_file["auc"] and lab_arr["auc"] == lab_file["auc"]
        assert lab_frame["ci"] == lab_file["ci"] and lab_arr["ci"] == lab_file["ci"]
    assert from_arrays["predictions"] == {"path": "<predictions arrays>"}
    assert from_frame["predictions"]["path"] == "<predictions DataFrame>"
    frame = from_file.to_frame()
    assert list(frame.index) == labels + ["macro"]
    assert frame.loc["macro", "auc"] == pytest.approx(from_file["macro"]["auc"])


def test_evaluate_bad_input_raises_and_writes_nothing(files, tmp_path):
    d, model, _ = files
    with pytest.raises(FileNotFoundError, match="cannot read .*missing.csv"):
        cxrlearn.evaluate(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="needs columns id, label, target, score"):
        cxrlearn.evaluate(model.drop(columns=["score"]))
    with pytest.raises(ValueError, match="at most 100000"):
        cxrlearn.evaluate(d / "model.csv", bootstrap=10**8)
    with pytest.raises(ValueError, match="confidence"):
        cxrlearn.evaluate(d / "model.csv", confidence=1.5)
    with pytest.raises(ValueError, match="patient"):
        cxrlearn.evaluate((np.array([0, 1, 0, 1.0]), np.array([0.1, 0.9, 0.2, 0.8])), resample="patient")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label,target,score\na,x,1,high\n")
    with pytest.raises(cxrlearn.CxrError, match="bad.csv: line 2"):
        cxrlearn.evaluate(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
