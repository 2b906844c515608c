import json

import numpy as np
import pytest
import torch

import cxrlearn
from cxrlearn import metrics

from conftest import FIXTURES


def test_roc_auc_matches_committed_sklearn_cases():
    cases = json.loads((FIXTURES / "cxr-stats/tests/fixtures/sklearn_auc.json").read_text())
    for case in cases["cases"]:
        known = [i for i, t in enumerate(case["targets"]) if t is not None]  # unknown: left out
        w = case.get("weights")
        got = metrics.roc_auc(
            [case["targets"][i] for i in known],
            [case["scores"][i] for i in known],
            None if w is None else [w[i] for i in known],
        )
        assert got == pytest.approx(case["auc"], abs=1e-12), case["name"]


def test_roc_auc_matches_sklearn_live_with_ties_weights_and_torch_inputs():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # rounded: many ties
    w = rng.uniform(0, 3, 500)
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.roc_auc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert metrics.roc_auc(torch.from_numpy(y), torch.from_numpy(s).float()) == pytest.approx(
        roc_auc_score(y, s.astype(np.float32)), abs=1e-12
    )


def test_roc_auc_bad_input_is_a_clear_value_error():
    with pytest.raises(ValueError, match="only one class"):
        metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        metrics.roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        metrics.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="must be numeric"):
        metrics.roc_auc(["a", "b"], [0.1, 0.2])
    with pytest.raises(ValueError, match="1-D"):
        metrics.roc_auc([[0, 1]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="not finite"):
        metrics.roc_auc([0, 1], [0.1, float("nan")])


def test_delong_matches_known_values_and_is_symmetric():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    a = rng.normal(size=300) + 1.2 * y
    b = rng.normal(size=300) + 0.6 * y
    d = metrics.delong(y, a, b)
    assert d["auc_a"] == pytest.approx(metrics.roc_auc(y, a), abs=1e-12)
    assert d["auc_b"] == pytest.approx(metrics.roc_auc(y, b), abs=1e-12)
    e = metrics.delong(y, b, a)
    assert e["p_value"] == pytest.approx(d["p_value"], abs=1e-12)
    assert e["z"] == pytest.approx(-d["z"], abs=1e-12)
    assert 0 <= d["p_value"] < 0.05


def test_bootstrap_resamples_patients_when_groups_are_given():
    rng = np.random.default_rng(2)
    patients = np.repeat(np.arange(40), 5)  # five films per patient, nearly alike
    y = np.repeat(rng.integers(0, 2, 40), 5)
    s = np.repeat(rng.normal(size=40), 5) + y + rng.normal(scale=0.05, size=200)
    by_patient = metrics.bootstrap(y, s, groups=patients, n_replicates=300, seed=4)
    by_image = metrics.bootstrap(y, s, n_replicates=300, seed=4)
    assert by_patient["resample"] == "patient" and by_patient["n_clusters"] == 40
    assert by_image["resample"] == "image" and by_image["n_clusters"] == 200
    assert by_patient["auc"] == pytest.approx(metrics.roc_auc(y, s), abs=1e-12)
    lo, hi = by_patient["ci"]
    assert lo < by_patient["auc"] < hi
    # Correlated films: the patient interval is the honest, wider one.
    assert hi - lo > by_image["ci"][1] - by_image["ci"][0]
    # Same seed, same numbers.
    assert metrics.bootstrap(y, s, groups=patients, n_replicates=300, seed=4) == by_patient
