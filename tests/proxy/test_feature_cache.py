"""FeatureCache: exact content, keys, reuse, torn-cache detection, encoder checkpoints."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from lightning_nas.data import SyntheticDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.proxy import (
    CachedFeatureDataset,
    FeatureCache,
    SmpEncoderFeature,
    TornCacheWarning,
    check_cache,
    smp_encoder_feature,
    split_source,
    state_dict_digest,
)

SOURCE = {"root": "in-memory", "split": "train"}


class CountingEncoder(nn.Module):
    """A strided conv that counts its calls (and can fail on a given call)."""

    def __init__(self, channels=4, fail_on_call=None):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=4, stride=4)
        self.calls = 0
        self.fail_on_call = fail_on_call

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("killed mid-build")
        return self.conv(x)


class Scenes(Dataset):
    """Fixed random images and masks (0..2 and 255)."""

    def __init__(self, num=6, size=16, seed=0, sizes=None):
        g = torch.Generator().manual_seed(seed)
        sizes = sizes or [size] * num
        self.images = [torch.randn(3, s, s, generator=g) for s in sizes]
        self.masks = [torch.randint(0, 3, (s, s), generator=g) for s in sizes]
        for mask in self.masks:
            mask[0, :] = 255

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "mask": self.masks[i]}


def make_encoder(seed=0, **kwargs):
    torch.manual_seed(seed)
    return CountingEncoder(**kwargs)


def make_cache(encoder, tmp_path, **kwargs):
    return FeatureCache(encoder, tmp_path / "cache", batch_size=4, progress=False, **kwargs)


def test_cache_holds_the_encoder_features(synthetic_root, tmp_path):
    torch.manual_seed(0)
    encoder = smp_encoder_feature("tu-mobilenetv2_100", output_stride=8)
    source = SyntheticDataModule(root=synthetic_root, num_train=16, num_val=8, image_size=32)
    source.prepare_data()  # the shared root may hold another test's rendering
    dataset, description = split_source(source, "train")
    cached = make_cache(encoder, tmp_path).build(dataset, description)

    assert cached.path.name.startswith("tu-mobilenetv2_100-os8-train-")
    features = np.load(cached.path / "features.npy", mmap_mode="r")
    masks = np.load(cached.path / "masks.npy", mmap_mode="r")
    assert features.dtype == np.float16 and features.shape == (16, 320, 4, 4)
    assert masks.dtype == np.uint8 and masks.shape == (16, 32, 32)
    assert cached.manifest["bytes_per_sample"] == 320 * 4 * 4 * 2
    assert encoder.training  # its mode is restored
    encoder.eval()
    with torch.no_grad():
        for i in (0, 7, 15):
            item = dataset[i]
            direct = encoder(item["image"][None])[0]
            torch.testing.assert_close(cached[i]["image"], direct, rtol=1e-3, atol=1e-3)
            assert cached[i]["image"].dtype == torch.float32
            assert torch.equal(cached[i]["mask"], item["mask"])


def test_same_inputs_reuse_the_cache_without_encoding(tmp_path):
    encoder = make_encoder()
    first = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    assert encoder.calls == 2  # 6 samples in batches of 4
    again = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    twin = make_encoder()  # another module with the same weights
    by_twin = make_cache(twin, tmp_path).build(Scenes(), SOURCE)
    assert encoder.calls == 2 and twin.calls == 0
    assert again.path == first.path == by_twin.path
    assert len(list((tmp_path / "cache").iterdir())) == 1
    opened = make_cache(encoder, tmp_path).open(Scenes(), SOURCE)
    assert opened.path == first.path


def test_changed_inputs_get_new_directories(tmp_path):
    base = make_cache(make_encoder(), tmp_path).path(Scenes(), SOURCE)

    encoder = make_encoder()
    with torch.no_grad():
        encoder.conv.weight[0, 0, 0, 0] += 1e-3
    changed = {
        "weights": make_cache(encoder, tmp_path).path(Scenes(), SOURCE),
        "architecture": make_cache(make_encoder(channels=5), tmp_path).path(Scenes(), SOURCE),
        "crop": make_cache(make_encoder(), tmp_path, crop_size=8).path(Scenes(), SOURCE),
        "other crop": make_cache(make_encoder(), tmp_path, crop_size=12).path(Scenes(), SOURCE),
        "samples": make_cache(make_encoder(), tmp_path).path(Scenes(num=5), SOURCE),
        "split": make_cache(make_encoder(), tmp_path).path(Scenes(), {**SOURCE, "split": "val"}),
        "transform": make_cache(make_encoder(), tmp_path).path(
            Scenes(), {**SOURCE, "transform": {"long_side": 8}}
        ),
    }
    assert len({base, *changed.values()}) == len(changed) + 1, changed


def test_changed_input_size_gets_a_new_directory(synthetic_root, tmp_path):
    encoder = make_encoder()
    source = SyntheticDataModule(root=synthetic_root, num_train=16, num_val=8, image_size=32)
    source.prepare_data()  # the shared root may hold another test's rendering
    resized = SyntheticDataModule(
        root=synthetic_root, num_train=16, num_val=8, image_size=32, long_side=16
    )
    full = make_cache(encoder, tmp_path).build(*split_source(source, "val"))
    small = make_cache(encoder, tmp_path).build(*split_source(resized, "val"))
    cropped = make_cache(encoder, tmp_path, crop_size=(16, 24)).build(*split_source(source, "val"))
    assert len({full.path, small.path, cropped.path}) == 3
    assert full.manifest["input_size"] == [32, 32] and small.manifest["input_size"] == [16, 16]
    assert cropped[0]["mask"].shape == (16, 24)
    assert cropped[0]["image"].shape == (4, 4, 6)


def test_crop_pads_with_zero_and_ignore_index(tmp_path):
    cached = make_cache(make_encoder(), tmp_path, crop_size=(20, 8)).build(Scenes(), SOURCE)
    scenes = Scenes()
    mask = cached[0]["mask"]
    assert mask.shape == (20, 8)
    assert torch.equal(mask[:16], scenes.masks[0][:, 4:12])  # center columns, all 16 rows
    assert (mask[16:] == 255).all()


def test_truncated_array_is_rebuilt_with_a_warning(tmp_path):
    encoder = make_encoder()
    cached = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    expected = np.load(cached.path / "features.npy").copy()
    features = cached.path / "features.npy"
    os.truncate(features, features.stat().st_size - 100)
    assert "bytes" in check_cache(cached.path)
    with pytest.raises(FileNotFoundError, match="no valid feature cache"):
        make_cache(encoder, tmp_path).open(Scenes(), SOURCE)

    with pytest.warns(TornCacheWarning, match=re.escape(str(cached.path))):
        rebuilt = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    assert encoder.calls == 4 and rebuilt.path == cached.path
    assert check_cache(rebuilt.path) is None
    np.testing.assert_array_equal(np.load(rebuilt.path / "features.npy"), expected)


def test_missing_manifest_is_rebuilt_with_a_warning(tmp_path):
    encoder = make_encoder()
    cached = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    (cached.path / "manifest.json").unlink()
    assert check_cache(cached.path) == "no manifest.json"
    with pytest.warns(TornCacheWarning, match="no manifest.json"):
        make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    assert encoder.calls == 4 and check_cache(cached.path) is None


@pytest.mark.parametrize("damage", ["shape", "array", "manifest"])
def test_manifest_disagreeing_with_the_arrays_is_rebuilt(tmp_path, damage):
    encoder = make_encoder()
    cached = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    manifest_path = cached.path / "manifest.json"
    if damage == "shape":  # a manifest describing other arrays
        manifest = json.loads(manifest_path.read_text())
        manifest["features"]["shape"][0] = 7
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "array":  # an array of the right byte size but another shape
        shape = np.load(cached.path / "features.npy").shape
        np.save(
            cached.path / "features.npy",
            np.zeros((shape[0] * 2, *shape[1:-1], shape[-1] // 2), np.float16),
        )
    else:  # a manifest cut off while it was written in place
        manifest_path.write_text(manifest_path.read_text()[:50])
    assert check_cache(cached.path) is not None
    with pytest.warns(TornCacheWarning):
        make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    assert encoder.calls == 4 and check_cache(cached.path) is None


def test_checksum_verification_finds_changed_bytes(tmp_path):
    encoder = make_encoder()
    cached = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    features = np.load(cached.path / "features.npy", mmap_mode="r+")
    features[3, 0, 0, 0] += 1
    features.flush()
    del features
    assert check_cache(cached.path) is None  # same sizes and shapes
    make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    assert encoder.calls == 2
    assert "SHA-256" in check_cache(cached.path, verify_checksum=True)
    with pytest.warns(TornCacheWarning, match="SHA-256"):
        make_cache(encoder, tmp_path, verify_checksum=True).build(Scenes(), SOURCE)
    assert encoder.calls == 4 and check_cache(cached.path, verify_checksum=True) is None


def test_a_killed_build_leaves_nothing_behind(tmp_path):
    encoder = make_encoder(fail_on_call=2)
    with pytest.raises(RuntimeError, match="killed mid-build"):
        make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    assert list((tmp_path / "cache").iterdir()) == []
    cached = make_cache(encoder, tmp_path).build(Scenes(), SOURCE)
    assert check_cache(cached.path) is None


def test_samples_of_different_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="crop_size"):
        make_cache(make_encoder(), tmp_path).build(Scenes(sizes=[16, 16, 20]), SOURCE)
    cached = make_cache(make_encoder(), tmp_path, crop_size=16).build(
        Scenes(sizes=[16, 16, 20]), SOURCE
    )
    assert len(cached) == 3


def test_progress_bar_and_encoder_lists(tmp_path, capsys):
    class ListEncoder(CountingEncoder):
        def forward(self, x):
            return [x, super().forward(x)]

    torch.manual_seed(0)
    cache = FeatureCache(ListEncoder(), tmp_path, progress=True)
    cached = cache.build(Scenes(), SOURCE)
    assert cached[0]["image"].shape == (4, 4, 4)
    assert "Caching features" in capsys.readouterr().out


def test_smp_encoder_feature_loads_local_checkpoints(tmp_path):
    torch.manual_seed(0)
    trained = SmpEncoderFeature("tu-mobilenetv2_100", output_stride=16)
    plain = tmp_path / "encoder.pt"
    torch.save(trained.encoder.state_dict(), plain)
    wrapped = tmp_path / "module.ckpt"
    state = {f"network.encoder.{k}": v for k, v in trained.encoder.state_dict().items()}
    torch.save({"state_dict": {**state, "network.head.weight": torch.zeros(1)}}, wrapped)

    torch.manual_seed(1)
    assert state_dict_digest(smp_encoder_feature("tu-mobilenetv2_100")) != state_dict_digest(
        trained
    )
    assert state_dict_digest(smp_encoder_feature("tu-mobilenetv2_100", plain)) == (
        state_dict_digest(trained)
    )
    from_module = SmpEncoderFeature("tu-mobilenetv2_100", str(wrapped), prefix="network.encoder.")
    assert state_dict_digest(from_module) == state_dict_digest(trained)
    with pytest.raises(ConfigError, match="not a file"):
        smp_encoder_feature("tu-mobilenetv2_100", tmp_path / "missing.pt")


def test_overflowing_features_and_wide_masks_are_refused(tmp_path):
    class Loud(CountingEncoder):
        def forward(self, x):
            return super().forward(x) * 1e6

    torch.manual_seed(0)
    with pytest.raises(ValueError, match="overflow float16"):
        make_cache(Loud(), tmp_path).build(Scenes(), SOURCE)
    scenes = Scenes()
    scenes.masks[2][0, 0] = 300
    with pytest.raises(ValueError, match="outside 0..255"):
        make_cache(make_encoder(), tmp_path).build(scenes, SOURCE)
    assert list((tmp_path / "cache").iterdir()) == []


class SlowEncoder(nn.Module):
    """An encoder that sleeps ``delay`` seconds per call after the first (to kill a build)."""

    def __init__(self, delay):
        super().__init__()
        self.encoder = make_encoder()
        self.delay = delay
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            time.sleep(self.delay)
        return self.encoder(x)


def slow_cache(root, delay):
    return FeatureCache(SlowEncoder(delay), root, batch_size=1, progress=False)


KILLED_BUILD = """
import sys
sys.path.insert(0, {tests!r})
from test_feature_cache import SOURCE, Scenes, slow_cache

slow_cache(sys.argv[1], float(sys.argv[2])).build(Scenes(), SOURCE)
"""


def test_build_killed_with_sigkill_then_rerun_gives_the_same_cache(tmp_path):
    root = tmp_path / "cache"
    script = tmp_path / "build.py"
    script.write_text(KILLED_BUILD.format(tests=str(Path(__file__).parent)))
    proc = subprocess.Popen([sys.executable, str(script), str(root), "60"])
    try:
        deadline = time.monotonic() + 120
        while not list(root.glob(".*.tmp-*/features.npy")):  # mid-build: arrays being written
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        proc.kill()
    assert [p.name[0] for p in root.iterdir()] == ["."]  # only the orphan, no cache

    slow_cache(root, 0).build(Scenes(), SOURCE)  # the rerun (what the script runs)
    built = list(root.iterdir())
    assert len(built) == 1 and not built[0].name.startswith(".")  # the orphan was removed
    reference = slow_cache(tmp_path / "reference", 0).build(Scenes(), SOURCE)
    assert reference.path.name == built[0].name
    for a, b in zip(CachedFeatureDataset(built[0]).arrays(), reference.arrays()):
        assert np.array_equal(a, b)
