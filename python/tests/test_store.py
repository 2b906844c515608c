import os

import numpy as np
import pytest
import torch

import cxrlearn


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_store_metadata(store):
    assert store.name == "phantom" and store.task == "multilabel"
    assert store.image_size == (64, 64)
    assert sum(store.splits.values()) == len(store)
    assert len(store.labels) == store.targets().shape[1]


def test_images_are_the_memory_map_not_a_copy(tmp_path):
    import mmap

    from safetensors.numpy import load_file

    # Large enough (about 30 MB of images) that a copy would stand far above
    # the resident-set noise of the interpreter's own allocations.
    store = cxrlearn.phantom(tmp_path / "raw", patients=200, size=96, store_size=256, seed=1)
    shards = sorted(p for p in os.listdir(store.path) if p.startswith("images-"))
    assert len(shards) == 1
    expected = load_file(os.path.join(store.path, shards[0]))["images"]
    before = _rss_bytes()
    images = store.images()
    grown = _rss_bytes() - before
    assert isinstance(images, np.memmap) and isinstance(images._mmap, mmap.mmap)
    assert not images.flags.owndata and not images.flags.writeable
    assert images.dtype == np.uint8 and images.shape == (len(store), 256, 256)
    assert images.nbytes > 20_000_000
    # Mapping pages nothing in; a copy would have grown the resident set by all of it.
    assert grown < images.nbytes / 2
    np.testing.assert_array_equal(images, expected)
    with pytest.raises(ValueError):
        images[0, 0, 0] = 1


def test_split_images_targets_and_manifest_agree(store):
    for split in ("train", "val", "test"):
        rows = store.indices(split)
        np.testing.assert_array_equal(store.images(split), np.asarray(store.images())[rows])
        y = store.targets(split)
        assert y.dtype == np.float32 and y.shape == (len(rows), len(store.labels))
        m = store.manifest(split)
        assert list(m["index"]) == list(rows)
        np.testing.assert_array_equal(m[store.labels].to_numpy(dtype=np.float32), y)
        assert set(m["split"]) == {split}
    with pytest.raises(ValueError, match="unknown split"):
        store.images("training")


def _reference_input(images_u8, size, mean, std):
    # torchvision-style preparation written independently: 0-1, bilinear
    # (align_corners=False, no antialias), 3 channels, normalised.
    x = torch.from_numpy(np.array(images_u8)).float().div(255)[:, None]
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1)
    return (x - torch.tensor(mean).view(1, 3, 1, 1).float()) / torch.tensor(std).view(1, 3, 1, 1).float()


def test_torch_dataset_items_are_prepared_as_features_prepares_them(store):
    ds = store.torch_dataset("test", size=96)  # upsampled from the stored 64 px
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == store.splits["test"]
    x, y = ds[0]
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32 and y.shape == (len(store.labels),)
    ref = _reference_input(store.images("test")[:4], 96, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    got = torch.stack([ds[i][0] for i in range(4)])
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    clip = store.torch_dataset("test", normalization="clip")[1][0]
    assert not torch.allclose(clip, store.torch_dataset("test")[1][0])


def test_dataloader_with_workers_gives_the_same_batches(store):
    ds = store.torch_dataset("train")
    direct = torch.stack([ds[i][0] for i in range(len(ds))])
    targets = torch.stack([ds[i][1] for i in range(len(ds))])
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    xs, ys = zip(*loader)
    torch.testing.assert_close(torch.cat(xs), direct, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat(ys), targets, rtol=0, atol=0, equal_nan=True)


def test_a_path_that_is_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        cxrlearn.Store(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(cxrlearn.CxrError, match="dataset.json"):
        cxrlearn.Store(tmp_path)


def test_convert_refuses_bad_options_before_writing(tmp_path, store):
    out = tmp_path / "store"
    with pytest.raises(ValueError, match="--size"):
        cxrlearn.convert(out, preset="phantom", root=store.path.removesuffix("-store"), size=0)
    with pytest.raises(ValueError, match="resize"):
        cxrlearn.convert(out, preset="phantom", root=store.path.removesuffix("-store"), resize="stretch")
    assert not out.exists()
