"""xautodl.datasets: readers of the real on-disk formats, search pairing, batch augmentation, loaders, errors."""
from __future__ import annotations

import io
import os
import pickle
import struct
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakedata import (
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_imagenet16,
    write_split_file,
)
from xautodl.datasets import (
    AugmentParams,
    BatchAugment,
    ImageTensors,
    SearchLoader,
    TensorLoader,
    dataset_info,
    get_nb201_loaders,
    get_search_loader,
    get_train_test_loaders,
    load_images,
    search_pair,
    shipped_split_file,
)
from xautodl.datasets.splits import half_split, read_split
from xautodl.errors import ConfigError, DataError

IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean, std that keep x / 255


def read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def indexed_images(count: int, side: int = 8) -> ImageTensors:
    """Image i is filled with the value i, so a normalised batch tells which images it holds."""
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 3, side, side).contiguous()
    return ImageTensors(images, torch.arange(count) % 10)


def image_ids(x: torch.Tensor) -> list[int]:
    """Inverse of `indexed_images` under identity normalisation."""
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


# --------------------------------------------------------------------------------------------- readers


def test_cifar10_reader_concatenates_the_batches_in_order(tmp_path):
    root = write_cifar10(tmp_path, n_train=20, n_test=6)
    folder = root / "cifar-10-batches-py"
    batches = [read_pickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    train = load_images("cifar10", "train", root)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    expected = np.concatenate([b["data"] for b in batches]).reshape(20, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert train.labels.tolist() == sum((b["labels"] for b in batches), [])
    test = load_images("cifar10", "test", root)
    assert test.labels.tolist() == read_pickle(folder / "test_batch")["labels"]
    # --data_path may also name the batches folder itself
    assert torch.equal(load_images("cifar10", "test", folder).images, test.images)


class Python2Pickler(pickle._Pickler):
    """Writes pickles the way Python 2 wrote the real CIFAR files: str and bytes as 8-bit strings (BINSTRING),
    numpy's globals under their numpy 1.x names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_8bit(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_8bit
    dispatch[type] = dispatch[types.BuiltinFunctionType] = save_global


def test_reads_python2_pickles_like_the_real_cifar_files(tmp_path):
    root = write_cifar10(tmp_path, n_train=10, n_test=3)
    folder = root / "cifar-10-batches-py"
    content = read_pickle(folder / "test_batch")
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(content)
    assert b"cnumpy.core.multiarray\n_reconstruct" in buffer.getvalue() and b"U\x06labels" in buffer.getvalue()
    (folder / "test_batch").write_bytes(buffer.getvalue())
    test = load_images("cifar10", "test", root)
    assert torch.equal(test.images, torch.from_numpy(content["data"].reshape(3, 3, 32, 32)))
    assert test.labels.tolist() == content["labels"]


def test_cifar100_reader_uses_fine_labels(tmp_path):
    root = write_cifar100(tmp_path, n_train=12, n_test=5)
    raw = read_pickle(root / "cifar-100-python" / "train")
    train = load_images("cifar100", "train", root)
    assert train.images.shape == (12, 3, 32, 32)
    assert train.labels.tolist() == raw["fine_labels"]
    assert torch.equal(train.images[3], torch.from_numpy(raw["data"][3].reshape(3, 32, 32)))
    assert len(load_images("cifar100", "test", root)) == 5
    # files re-saved from a pickle.load(..., encoding="bytes") have bytes keys
    bytes_keys = {key.encode(): value for key, value in raw.items()}
    (root / "cifar-100-python" / "train").write_bytes(pickle.dumps(bytes_keys))
    assert load_images("cifar100", "train", root).labels.tolist() == raw["fine_labels"]


def test_imagenet16_keeps_classes_1_to_120_shifted_to_0_based(tmp_path):
    root = write_imagenet16(tmp_path, n_per_batch=6, n_val=10)
    raw = [read_pickle(root / f"train_data_batch_{i}") for i in range(1, 11)]
    rows = np.concatenate([b["data"] for b in raw])
    labels = np.concatenate([b["labels"] for b in raw])
    kept = labels <= 120
    assert 0 < kept.sum() < len(labels)  # the fake data has both kinds
    train = load_images("ImageNet16-120", "train", root)
    assert train.images.shape == (kept.sum(), 3, 16, 16)
    assert train.labels.tolist() == (labels[kept] - 1).tolist()
    assert torch.equal(train.images, torch.from_numpy(rows[kept].reshape(-1, 3, 16, 16)))
    assert train.labels.min() >= 0 and train.labels.max() <= 119
    val_labels = np.asarray(read_pickle(root / "val_data")["labels"])
    assert len(load_images("ImageNet16-120", "test", root)) == (val_labels <= 120).sum()


def test_image_folder_decodes_resizes_and_labels_by_sorted_class(tmp_path):
    root = write_image_folder(tmp_path, classes=3, per_class=2, size=20)
    Image.new("RGB", (40, 20), (255, 0, 0)).save(root / "val" / "class_1" / "red.jpg", quality=100)
    train = load_images("folder", "train", root)
    assert train.images.shape == (6, 3, 32, 32) and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    test = load_images("folder", "test", root)
    assert test.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    red = test.images[4].float()  # class_1 holds img_0, img_1, red (sorted)
    assert red.shape == (3, 32, 32)
    assert red[0].min() > 240 and red[1:].max() < 15
    assert load_images("folder", "test", root, image_size=16).images.shape == (7, 3, 16, 16)


def test_digits_demo_set_shapes_and_fixed_split():
    train = load_images("digits", "train")
    test = load_images("digits", "test")
    assert train.images.shape == (1500, 3, 16, 16) and test.images.shape == (297, 3, 16, 16)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grey
    assert sorted(set(train.labels.tolist())) == list(range(10))
    again = load_images("digits", "train")
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    info = dataset_info("digits")
    assert info.num_classes == 10 and not info.flip


def test_dataset_info_constants():
    cifar = dataset_info("cifar10")
    assert cifar.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    assert cifar.std == pytest.approx((63.0 / 255, 62.1 / 255, 66.7 / 255))
    assert (cifar.num_classes, cifar.image_size, cifar.crop_padding) == (10, 32, 4)
    imagenet16 = dataset_info("ImageNet16-120")
    assert (imagenet16.num_classes, imagenet16.image_size, imagenet16.crop_padding) == (120, 16, 2)
    assert dataset_info("cifar100").mean == pytest.approx((129.3 / 255, 124.1 / 255, 112.4 / 255))
    assert dataset_info("imagenet-1k").std == (0.229, 0.224, 0.225)
    with pytest.raises(DataError, match="unknown dataset 'svhn'.*cifar10.*ImageNet16-120.*digits"):
        dataset_info("svhn")


# ---------------------------------------------------------------------------------------- augmentation


def reference_crop_flip(images: torch.Tensor, params: AugmentParams, pad: int) -> torch.Tensor:
    """Per-image crop and flip, the way RandomCrop(padding) + RandomHorizontalFlip do it."""
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    height, width = images.shape[2:]
    out = []
    for i in range(images.shape[0]):
        top, left = int(params.tops[i]), int(params.lefts[i])
        crop = padded[i, :, top : top + height, left : left + width]
        out.append(crop.flip(-1) if params.flips[i] else crop)
    return torch.stack(out)


def all_crop_params(pad: int, height: int, width: int) -> AugmentParams:
    """Every (top, left, flip) combination once."""
    grid = [(t, l, f) for t in range(2 * pad + 1) for l in range(2 * pad + 1) for f in (0, 1)]
    tops, lefts, flips = (torch.tensor(column) for column in zip(*grid))
    zeros = torch.zeros(len(grid), dtype=torch.long)
    return AugmentParams(tops, lefts, flips, zeros, zeros)


def test_crop_and_flip_match_the_per_image_reference():
    params = all_crop_params(4, 32, 32)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (len(params.tops), 3, 32, 32), dtype=torch.uint8, generator=generator)
    augment = BatchAugment(*IDENTITY, padding=4, flip=True)
    out = augment.apply(images, params)
    assert torch.allclose(out, reference_crop_flip(images, params, 4).float() / 255)


def test_marker_pixel_moves_by_the_crop_offset_and_mirrors_with_flips():
    pad, side, row, col = 2, 16, 5, 9
    params = all_crop_params(pad, side, side)
    count = len(params.tops)
    images = torch.zeros(count, 3, side, side, dtype=torch.uint8)
    images[:, :, row, col] = 255
    out = BatchAugment(*IDENTITY, padding=pad, flip=True).apply(images, params)
    for i in range(count):
        expected_row = row + pad - int(params.tops[i])
        expected_col = col + pad - int(params.lefts[i])
        if params.flips[i]:
            expected_col = side - 1 - expected_col
        marked = (out[i, 0] == 1.0).nonzero().tolist()
        assert marked == [[expected_row, expected_col]]
        assert abs(expected_row - row) <= pad  # the shift never exceeds the padding
        assert out[i].sum() == 3.0


def test_sampled_offsets_stay_within_the_padding_and_flip_about_half():
    augment = BatchAugment(*IDENTITY, padding=4, flip=True, cutout=16)
    params = augment.sample(4000, 32, 32, torch.Generator().manual_seed(0))
    assert set(params.tops.tolist()) == set(range(9)) and set(params.lefts.tolist()) == set(range(9))
    assert 0.45 < params.flips.float().mean() < 0.55
    assert set(params.cut_ys.tolist()) == set(range(32))


@pytest.mark.parametrize(
    "centre, rows, cols",
    [((16, 16), (8, 24), (8, 24)), ((0, 0), (0, 8), (0, 8)), ((31, 5), (23, 32), (0, 13))],
)
def test_cutout_zeroes_exactly_the_clipped_square(centre, rows, cols):
    images = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    zero = torch.zeros(1, dtype=torch.long)
    params = AugmentParams(zero, zero, zero, torch.tensor([centre[0]]), torch.tensor([centre[1]]))
    out = BatchAugment(*IDENTITY, cutout=16).apply(images, params)
    expected = torch.ones(1, 3, 32, 32)
    expected[:, :, rows[0] : rows[1], cols[0] : cols[1]] = 0
    assert torch.equal(out, expected)


def test_cutout_comes_after_normalisation():
    info = dataset_info("cifar10")
    images = torch.full((1, 3, 32, 32), 7, dtype=torch.uint8)
    zero = torch.zeros(1, dtype=torch.long)
    params = AugmentParams(zero + 4, zero + 4, zero, zero + 16, zero + 16)
    out = BatchAugment.for_dataset(info, train=True, cutout=16).apply(images, params)
    assert (out[0, :, 8:24, 8:24] == 0).all()
    normalised = (7 / 255 - torch.tensor(info.mean)) / torch.tensor(info.std)
    assert torch.allclose(out[0, :, 0, 0], normalised.float())


def test_normalisation_matches_torchvision():
    from torchvision import transforms

    info = dataset_info("cifar100")
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    ours = BatchAugment.for_dataset(info, train=False)(images)
    theirs = transforms.Normalize(info.mean, info.std)(images.float() / 255)
    assert torch.allclose(ours, theirs, atol=1e-5)


# --------------------------------------------------------------------------------------------- loaders


def identity_loader(data: ImageTensors, batch_size: int, **kwargs) -> TensorLoader:
    return TensorLoader(data, batch_size, "cpu", BatchAugment(*IDENTITY), **kwargs)


def epoch_ids(loader) -> list[int]:
    return [i for x, _ in loader for i in image_ids(x)]


def test_order_is_a_function_of_seed_and_epoch():
    data = indexed_images(50)
    first = identity_loader(data, 8, seed=3)
    second = identity_loader(data, 8, seed=3)
    epoch0 = epoch_ids(first)
    assert sorted(epoch0) == list(range(50)) and epoch0 != list(range(50))
    assert epoch_ids(second) == epoch0
    first.set_epoch(1)
    assert epoch_ids(first) != epoch0
    first.set_epoch(0)
    assert epoch_ids(first) == epoch0
    assert epoch_ids(identity_loader(data, 8, seed=4)) != epoch0


def test_augmentation_is_a_function_of_seed_and_epoch():
    data = ImageTensors(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20))
    augment = BatchAugment.for_dataset(dataset_info("cifar10"), train=True, cutout=16)
    runs = []
    for epoch in (0, 0, 1):
        loader = TensorLoader(data, 8, "cpu", augment, seed=11)
        loader.set_epoch(epoch)
        runs.append(torch.cat([x for x, _ in loader]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_distributed_shards_are_disjoint_and_equal_in_length():
    data = indexed_images(64)
    shards = [identity_loader(data, 5, seed=0, rank=rank, world_size=3) for rank in range(3)]
    seen = [epoch_ids(shard) for shard in shards]
    assert [len(ids) for ids in seen] == [21, 21, 21] and len({len(shard) for shard in shards}) == 1
    assert len(set(seen[0]) | set(seen[1]) | set(seen[2])) == 63
    evaluation = [identity_loader(data, 5, shuffle=False, rank=rank, world_size=3) for rank in range(3)]
    assert sorted(i for loader in evaluation for i in epoch_ids(loader)) == list(range(64))


def test_each_process_draws_its_own_augmentation():
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    same_image = ImageTensors(image.expand(16, -1, -1, -1), torch.zeros(16, dtype=torch.long))
    augment = BatchAugment.for_dataset(dataset_info("cifar10"), train=True)
    ranks = [TensorLoader(same_image, 8, "cpu", augment, seed=0, rank=rank, world_size=2) for rank in range(2)]
    first, second = (next(iter(loader))[0] for loader in ranks)
    assert not torch.equal(first, second)


def test_lengths_and_drop_last():
    data = indexed_images(21)
    assert len(identity_loader(data, 5)) == 5
    assert len(identity_loader(data, 5, drop_last=True)) == 4
    assert [x.shape[0] for x, _ in identity_loader(data, 5, drop_last=True)] == [5, 5, 5, 5]
    with pytest.raises(ConfigError, match="batch size"):
        identity_loader(data, 0)


def test_search_loader_cycles_the_shorter_valid_side_with_a_new_order_each_pass():
    train = identity_loader(indexed_images(40), 4, seed=0)
    valid_images = ImageTensors(indexed_images(48).images[40:], torch.zeros(8, dtype=torch.long))
    valid = identity_loader(valid_images, 4, seed=0, stream=1)
    loader = SearchLoader(train, valid)
    batches = list(loader)
    assert len(loader) == len(batches) == 10
    valid_ids = [i for *_, x_valid, _ in batches for i in image_ids(x_valid)]
    passes = [valid_ids[k : k + 8] for k in range(0, 40, 8)]
    assert all(sorted(p) == list(range(40, 48)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1
    assert sorted(i for x_train, *_ in batches for i in image_ids(x_train)) == list(range(40))


def test_the_valid_side_read_with_the_test_transform_is_the_same_images_unaugmented():
    """SETN and RSPS score candidates on unaugmented valid images (as the original's valid loader): the same
    images, in the same order, as the augmented pass, only normalised."""
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=rng)
    data = ImageTensors(images, torch.arange(12))  # a label names its image
    augment, plain = BatchAugment(*IDENTITY, padding=2, flip=True), BatchAugment(*IDENTITY)
    side = lambda stream: TensorLoader(data, 4, "cpu", augment, seed=1, stream=stream)
    loader = SearchLoader(side(0), side(1), evaluation=plain)
    augmented = list(loader.valid_batches(epoch=2, cycle=3, augmented=True))
    unaugmented = list(loader.valid_batches(epoch=2, cycle=3, augmented=False))
    assert [y.tolist() for _, y in augmented] == [y.tolist() for _, y in unaugmented]
    for (x_aug, y), (x_plain, _) in zip(augmented, unaugmented):
        assert torch.equal(x_plain, plain(images[y]))
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(augmented, unaugmented))  # augmentation did act


# ---------------------------------------------------------------------------------------- search pairs


def test_shipped_split_files_are_disjoint_halves():
    cifar = read_split(shipped_split_file("cifar10"), ("train", "valid"))
    assert len(cifar["train"]) == len(cifar["valid"]) == 25_000
    assert sorted(cifar["train"] + cifar["valid"]) == list(range(50_000))
    for name, size in (("cifar100", 10_000), ("ImageNet16-120", 6_000)):
        split = read_split(shipped_split_file(name), ("xvalid", "xtest"))
        assert sorted(split["xvalid"] + split["xtest"]) == list(range(size))


def plain(images: torch.Tensor, info) -> torch.Tensor:
    return BatchAugment.for_dataset(info, train=False)(images)


def count_unaugmented(batch: torch.Tensor, candidates: torch.Tensor) -> int:
    """How many images of `batch` equal one of `candidates` exactly (an un-augmented image)."""
    return sum(bool((candidates == x).flatten(1).all(1).any()) for x in batch)


def test_cifar10_search_pairs_the_two_halves_of_the_training_set_both_augmented(tmp_path):
    root = write_cifar10(tmp_path / "data", n_train=64, n_test=8)
    train_set = load_images("cifar10", "train", root)
    low = [i for i in range(64) if train_set.labels[i] < 5]
    high = [i for i in range(64) if train_set.labels[i] >= 5]
    split = write_split_file(tmp_path / "split.txt", {"train": low, "valid": high})
    train_side, valid_side = search_pair("cifar10", root, split)
    assert torch.equal(train_side.images, train_set.images[low])
    assert torch.equal(valid_side.images, train_set.images[high])
    loader, info = get_search_loader("cifar10", 16, "cpu", seed=0, data_path=root, split_file=split)
    assert info.num_classes == 10 and len(loader) == -(-len(low) // 16)
    for x_train, y_train, x_valid, y_valid in loader:
        assert x_train.shape[1:] == (3, 32, 32) and x_train.dtype == torch.float32
        assert (y_train < 5).all() and (y_valid >= 5).all()
        assert count_unaugmented(x_train, plain(train_side.images, info)) < len(x_train) / 2
        assert count_unaugmented(x_valid, plain(valid_side.images, info)) < len(x_valid) / 2


def test_cifar100_and_imagenet16_search_pair_the_training_set_with_xvalid_of_the_test_set(tmp_path):
    root = write_cifar100(tmp_path / "c100", n_train=24, n_test=10)
    split = write_split_file(tmp_path / "c100.txt", {"xvalid": [1, 3, 5], "xtest": [0, 2, 4]})
    train_side, valid_side = search_pair("cifar100", root, split)
    test_set = load_images("cifar100", "test", root)
    assert len(train_side) == 24 and torch.equal(valid_side.labels, test_set.labels[[1, 3, 5]])

    root16 = write_imagenet16(tmp_path / "i16", n_per_batch=4, n_val=12)
    test16 = load_images("ImageNet16-120", "test", root16)
    split16 = write_split_file(tmp_path / "i16.txt", {"xvalid": [0, 2], "xtest": [1]})
    loader, info = get_search_loader("ImageNet16-120", 4, "cpu", seed=0, data_path=root16, split_file=split16)
    assert info.num_classes == 120 and loader.valid.dataset_size == 2
    assert loader.train.dataset_size == len(load_images("ImageNet16-120", "train", root16))
    x_train, _, x_valid, y_valid = next(iter(loader))
    assert x_train.shape[1:] == (3, 16, 16) and set(y_valid.tolist()) <= set(test16.labels[[0, 2]].tolist())


def test_digits_and_folder_search_on_fixed_halves(tmp_path):
    first, second = half_split(1500)
    assert len(first) == len(second) == 750 and not set(first) & set(second)
    assert half_split(1500) == (first, second)
    train_side, valid_side = search_pair("digits")
    assert len(train_side) == len(valid_side) == 750
    root = write_image_folder(tmp_path, classes=2, per_class=3)
    loader, info = get_search_loader("folder", 2, "cpu", seed=0, data_path=root)
    assert info.num_classes == 2 and loader.train.dataset_size == 3 and loader.valid.dataset_size == 3


def test_split_file_indexing_beyond_the_data_says_it_is_incomplete(tmp_path):
    root = write_cifar10(tmp_path, n_train=20, n_test=4)
    with pytest.raises(DataError, match="incomplete, or the split file does not match"):
        get_search_loader("cifar10", 4, "cpu", seed=0, data_path=root)  # the shipped file indexes 50,000 images
    wrong_keys = write_split_file(tmp_path / "keys.txt", {"train": [0, 1]})
    with pytest.raises(DataError, match="lacks valid"):
        get_search_loader("cifar10", 4, "cpu", seed=0, data_path=root, split_file=wrong_keys)


# -------------------------------------------------------------------------------- NB201 and train/test


def test_nb201_settings_use_the_documented_subsets(tmp_path):
    root = write_cifar10(tmp_path / "c10", n_train=20, n_test=6)
    split = write_split_file(tmp_path / "split.txt", {"train": list(range(0, 20, 2)), "valid": list(range(1, 20, 2))})
    train, evals, info = get_nb201_loaders("cifar10-valid", 4, "cpu", seed=0, data_path=root, split_file=split)
    assert info.name == "cifar10" and set(evals) == {"valid", "test"}
    assert (train.dataset_size, evals["valid"].dataset_size, evals["test"].dataset_size) == (10, 10, 6)
    assert not evals["valid"].transform.is_random and train.transform.is_random
    train_set = load_images("cifar10", "train", root)
    valid_images = torch.cat([x for x, _ in evals["valid"]])
    assert torch.equal(valid_images, plain(train_set.images[1::2], info))
    train, evals, _ = get_nb201_loaders("cifar10", 4, "cpu", seed=0, data_path=root)
    assert set(evals) == {"test"} and train.dataset_size == 20

    root100 = write_cifar100(tmp_path / "c100", n_train=8, n_test=6)
    split100 = write_split_file(tmp_path / "s100.txt", {"xvalid": [0, 1, 2], "xtest": [3, 4, 5]})
    train, evals, info = get_nb201_loaders("cifar100", 4, "cpu", seed=0, data_path=root100, split_file=split100)
    assert info.num_classes == 100 and train.dataset_size == 8
    test_labels = load_images("cifar100", "test", root100).labels
    assert torch.cat([y for _, y in evals["valid"]]).tolist() == test_labels[:3].tolist()
    assert torch.cat([y for _, y in evals["test"]]).tolist() == test_labels[3:].tolist()
    with pytest.raises(DataError, match="unknown NAS-Bench-201 setting"):
        get_nb201_loaders("cifar10-test", 4, "cpu", seed=0)


def test_train_test_loaders(tmp_path):
    root = write_cifar10(tmp_path, n_train=20, n_test=6)
    train, test, info = get_train_test_loaders("cifar10", 8, "cpu", seed=0, cutout=16, data_path=root)
    assert train.transform.cutout == 16 and len(train) == 3 and len(test) == 1
    x, y = next(iter(test))
    assert torch.equal(x, plain(load_images("cifar10", "test", root).images, info))


def test_imagenet_folder_loader_yields_224_crops(tmp_path):
    root = write_image_folder(tmp_path, classes=2, per_class=2, size=40)
    train, test, info = get_train_test_loaders("imagenet-1k", 2, "cpu", seed=0, data_path=root, workers=0)
    assert info.num_classes == 1000 and len(train) == 2 and train.num_images == 4
    train.set_epoch(1)
    x, y = next(iter(train))
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert [y.tolist() for _, y in test] == [[0, 0], [1, 1]]


# ---------------------------------------------------------------------------------------------- errors


def test_torch_home_unset(monkeypatch):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    with pytest.raises(DataError, match="TORCH_HOME is not set.*--data_path"):
        load_images("cifar10", "train")
    assert len(load_images("digits", "test")) == 297  # the demo set needs no data folder


def test_missing_cifar_names_folder_files_and_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = str(tmp_path / "cifar.python" / "cifar-10-batches-py")
    with pytest.raises(DataError) as error:
        load_images("cifar10", "train")
    message = str(error.value)
    assert expected in message and "data_batch_1" in message and "test_batch" in message
    assert "--download" in message and "cifar-10-python.tar.gz" in message


def test_incomplete_cifar_lists_the_missing_files(tmp_path):
    root = write_cifar10(tmp_path, n_train=10, n_test=2)
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError, match="lacks data_batch_3"):
        load_images("cifar10", "test", root)


def test_download_failure_offline_gives_the_manual_steps(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DataError, match="downloading cifar100 .* failed .*cifar-100-python.tar.gz"):
        load_images("cifar100", "train", tmp_path, download=True)


@pytest.mark.parametrize(
    "content",
    [b"not a pickle at all", pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}),
     pickle.dumps({"pixels": np.zeros((2, 3072), np.uint8)}), pickle.dumps([1, 2])],
    ids=["garbage", "wrong-shape", "wrong-keys", "not-a-dict"],
)
def test_corrupt_pickle_names_the_file(tmp_path, content):
    root = write_cifar10(tmp_path, n_train=10, n_test=2)
    bad = root / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=str(bad)):
        load_images("cifar10", "train", root)


class RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_data_pickles_cannot_run_code(tmp_path):
    root = write_imagenet16(tmp_path, n_per_batch=2, n_val=2)
    (root / "val_data").write_bytes(pickle.dumps({"data": RunsCode(), "labels": [1]}))
    with pytest.raises(DataError, match="val_data.*refusing to load .*getcwd"):
        load_images("ImageNet16-120", "test", root)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="needs --data_path"):
        load_images("folder", "train")
    root = write_image_folder(tmp_path / "imgs", classes=2, per_class=1)
    (root / "val" / "class_0" / "img_0.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="cannot decode image .*img_0.png"):
        load_images("folder", "test", root)
    with pytest.raises(DataError, match="does not exist.*train/<class>"):
        load_images("folder", "train", tmp_path / "nowhere")
    with pytest.raises(DataError, match="imagenet-1k folder .*train does not exist"):
        get_train_test_loaders("imagenet-1k", 2, "cpu", seed=0, data_path=tmp_path / "nowhere")


def test_unknown_split_and_imagenet16_missing(tmp_path):
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_images("digits", "valid")
    with pytest.raises(DataError, match="ImageNet16-120 is incomplete.*train_data_batch_1.*val_data"):
        load_images("ImageNet16-120", "train", tmp_path)
