import json
import os

import numpy as np
import pytest
import torch

import cxrlearn

from conftest import FIXTURES

CKPT = FIXTURES / "cxr-nn/tests/fixtures/checkpoints"


@pytest.mark.parametrize("name", ["state_dict.pt", "state_dict_legacy.pt"])
def test_load_checkpoint_equals_torch_load_weights_only(name):
    ours = cxrlearn.load_checkpoint(CKPT / name)
    theirs = torch.load(CKPT / name, weights_only=True)
    flat = {}

    def walk(prefix, v):
        if isinstance(v, torch.Tensor):
            flat[prefix] = v
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)

    walk("", theirs)
    assert set(ours) == set(flat)
    for k in flat:
        assert ours[k].dtype == flat[k].dtype and ours[k].shape == flat[k].shape, k
        torch.testing.assert_close(ours[k], flat[k], rtol=0, atol=0)


def test_load_checkpoint_reads_a_lightning_file_that_weights_only_refuses():
    with pytest.raises(Exception):
        torch.load(CKPT / "lightning.ckpt", weights_only=True)
    ours = cxrlearn.load_checkpoint(CKPT / "lightning.ckpt")
    expected = json.loads((CKPT / "expected.json").read_text())["tensors"]
    lightning = {k.split(":", 1)[1]: v for k, v in expected.items() if k.startswith("lightning:")}
    assert lightning
    for name, e in lightning.items():
        assert list(ours[name].shape) == e["shape"]
        np.testing.assert_array_equal(ours[name].double().flatten().numpy(), e["values"])


def test_a_malicious_pickle_is_read_as_data_and_never_executed():
    marker = "/tmp/cxrlearn-pickle-was-executed"
    if os.path.exists(marker):
        os.remove(marker)
    ours = cxrlearn.load_checkpoint(CKPT / "evil.pt")
    assert not os.path.exists(marker)
    assert "weight" in ours and isinstance(ours["weight"], torch.Tensor)


def test_load_checkpoint_errors():
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        cxrlearn.load_checkpoint("nope.pt")
    with pytest.raises(cxrlearn.CxrError, match="not a PyTorch checkpoint"):
        cxrlearn.load_checkpoint(FIXTURES / "cxr-stats/tests/fixtures/sklearn_auc.json")


def test_import_weights_gives_torchvision_names():
    moco = FIXTURES / "cxr-nn/tests/fixtures/moco/moco-cxr_resnet18.pth.tar"
    sd, ignored = cxrlearn.import_weights("mococxr-resnet18", moco, return_ignored=True)
    names = json.loads((FIXTURES / "cxr-nn/tests/fixtures/resnet/torchvision_names.json").read_text())
    expected = set(names["resnet18"]) - {"fc.weight", "fc.bias"}
    assert set(sd) == expected  # with num_batches_tracked: loads with strict=True but for the head
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    raw = cxrlearn.load_checkpoint(moco)
    q = [k for k in raw if k.endswith("encoder_q.conv1.weight")]
    torch.testing.assert_close(sd["conv1.weight"], raw[q[0]], rtol=0, atol=0)
    assert all(isinstance(k, str) and isinstance(why, str) for k, why in ignored)
    with pytest.raises(ValueError, match="unknown model 'resnet5'"):
        cxrlearn.import_weights("resnet5", moco)


def test_models_list_is_the_cli_registry(cli):
    ours = cxrlearn.models.list()
    theirs = json.loads(cli("models", "--json").stdout)
    assert ours == theirs
    assert "rad-dino" in cxrlearn.models.names()


def test_features_equal_the_cli_and_the_cache_is_the_clis(store, cli, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "cli-features"
    cli("features", "--model", "scratch:resnet18", "--data", store.path, "--out", str(out),
        "--device", "cpu")
    expected = load_file(str(out / "test.safetensors"))["features"]
    direct = cxrlearn.features("scratch:resnet18", store, "test")
    torch.testing.assert_close(direct, expected, rtol=1e-5, atol=1e-6)
    cached = cxrlearn.features("scratch:resnet18", store, "test", cache=out)  # the CLI's cache, reused
    torch.testing.assert_close(cached, expected, rtol=0, atol=0)
    fresh = tmp_path / "py-cache"
    everything = cxrlearn.features("scratch:resnet18", store, cache=fresh)
    assert everything.shape == (len(store), 512)
    rows = torch.from_numpy(store.indices("test"))
    torch.testing.assert_close(everything[rows], expected, rtol=1e-5, atol=1e-6)
    assert json.loads((fresh / "meta.json").read_text())["cache_key"] == json.loads(
        (out / "meta.json").read_text())["cache_key"]
    with pytest.raises(ValueError, match="unknown normalization"):
        cxrlearn.features("scratch:resnet18", store, "test", normalization="imagenet2")
    with pytest.raises(cxrlearn.CxrError, match="holds other"):
        cxrlearn.features("scratch:resnet18", store, "test", cache=tmp_path)


LOGREG = FIXTURES / "cxr-learn/tests/fixtures/logreg"


@pytest.mark.parametrize("case", ["multilabel_raw", "multilabel_standardized"])
def test_logistic_probe_matches_sklearn_fixtures(case):
    f = json.loads((LOGREG / f"{case}.json").read_text())
    probe = cxrlearn.LogisticProbe(C=f["c"], standardize=f["standardize"], tol=1e-10, max_iter=10000)
    x = np.asarray(f["x_train"], dtype=np.float64)
    y = np.asarray(f["y_train"], dtype=np.float64)
    probe.fit(x, y)
    np.testing.assert_allclose(probe.coef_, np.asarray(f["sklearn_coef"]).reshape(probe.coef_.shape), atol=1e-5)
    np.testing.assert_allclose(probe.intercept_, np.ravel(f["sklearn_intercept"]), atol=1e-5)
    scores = probe.predict_proba(np.asarray(f["x_test"]))
    np.testing.assert_allclose(scores, np.asarray(f["test_scores"]).reshape(scores.shape), atol=1e-5)


def test_logistic_probe_matches_sklearn_live_with_unknown_targets_and_torch():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20))
    w = rng.normal(size=(20, 3))
    y = (x @ w + rng.normal(size=(400, 3)) > 0).astype(float)
    y[rng.random((400, 3)) < 0.1] = np.nan
    probe = cxrlearn.LogisticProbe(C=0.5, tol=1e-10, max_iter=10000).fit(torch.from_numpy(x), y)
    for j in range(3):
        known = ~np.isnan(y[:, j])
        sk = LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(x[known], y[known, j])
        np.testing.assert_allclose(probe.coef_[j], sk.coef_[0], atol=1e-6)
        np.testing.assert_allclose(probe.intercept_[j], sk.intercept_[0], atol=1e-6)
    p = probe.predict_proba(torch.from_numpy(x))
    assert isinstance(p, torch.Tensor) and p.shape == (400, 3)
    one = cxrlearn.LogisticProbe(C=0.5, tol=1e-10, max_iter=10000).fit(x, y[:, 0].copy())
    known = ~np.isnan(y[:, 0])
    sk = LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(x[known], y[known, 0])
    np.testing.assert_allclose(one.predict_proba(x), sk.predict_proba(x), atol=1e-6)


def test_logistic_probe_bad_input():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="label0.*positive"):
        cxrlearn.LogisticProbe().fit(x, np.ones(10))
    with pytest.raises(ValueError, match="10 samples"):
        cxrlearn.LogisticProbe().fit(x, np.ones(9))
    with pytest.raises(ValueError, match="2-D"):
        cxrlearn.LogisticProbe().fit(np.zeros(10), np.ones(10))
    with pytest.raises(ValueError, match="numeric"):
        cxrlearn.LogisticProbe().fit(np.array([["a"] * 3] * 10), np.ones(10))
    with pytest.raises(ValueError, match="not fitted"):
        cxrlearn.LogisticProbe().predict_proba(x)
    with pytest.raises(ValueError, match="C must be"):
        cxrlearn.LogisticProbe(C=-1).fit(x, np.r_[np.ones(5), np.zeros(5)])
