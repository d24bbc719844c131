"""The validation split, the batch transforms, the epoch order and the prepared-data file."""

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from transfer.datasets.splitting import fine_to_coarse, stratified_split
from transfer.errors import UserError
from transfer.training.augment import IMAGENET_MEAN, IMAGENET_STD, normalize, random_crop, random_flip
from transfer.training.prepared_data import epoch_generator, load_prepared, shuffled_batches

CPU = torch.device("cpu")
NUM_CLASSES = 100
BALANCED_LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(NUM_CLASSES), 50))  # 5,000 images
# Uneven classes (7 to 96 images) so each class's share is not a round number.
UNEVEN_LABELS = np.random.default_rng(1).permutation(np.repeat(np.arange(NUM_CLASSES), np.arange(NUM_CLASSES) % 90 + 7))


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with seed."""
    return torch.Generator(device=CPU).manual_seed(seed)


def distinct_pixel_image(channels: int, size: int) -> torch.Tensor:
    """(C, size, size) uint8 whose pixels all differ, so any shift or mirror changes it."""
    return torch.arange(1, channels * size * size + 1, dtype=torch.uint8).view(channels, size, size)


# --- stratified_split -------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [BALANCED_LABELS, UNEVEN_LABELS], ids=["balanced", "uneven"])
@pytest.mark.parametrize("val_size", [1, 100, 137, 2500, 4999])
def test_split_sizes_and_class_shares(labels, val_size):
    val_size = min(val_size, len(labels) - 1)
    train_indices, val_indices = stratified_split(labels, val_size, seed=0)
    assert len(val_indices) == val_size
    assert len(train_indices) == len(labels) - val_size
    assert len(np.intersect1d(train_indices, val_indices)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_indices, val_indices])), np.arange(len(labels)))
    val_counts = np.bincount(labels[val_indices], minlength=NUM_CLASSES)
    exact_share = val_size * np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
    assert np.all(np.abs(val_counts - exact_share) < 1), np.abs(val_counts - exact_share).max()


def test_split_of_cifar_sized_labels_takes_50_per_class():
    labels = np.repeat(np.arange(NUM_CLASSES), 500)  # 50,000 images like the real training set
    _, val_indices = stratified_split(labels, 5000, seed=0)
    assert len(val_indices) == 5000
    np.testing.assert_array_equal(np.bincount(labels[val_indices]), np.full(NUM_CLASSES, 50))


def test_split_is_a_function_of_the_seed():
    first_train, first_val = stratified_split(BALANCED_LABELS, 137, seed=3)
    again_train, again_val = stratified_split(BALANCED_LABELS, 137, seed=3)
    np.testing.assert_array_equal(first_val, again_val)
    np.testing.assert_array_equal(first_train, again_train)
    _, other_val = stratified_split(BALANCED_LABELS, 137, seed=4)
    assert not np.array_equal(first_val, other_val)


@pytest.mark.parametrize("val_size", [0, -1, len(BALANCED_LABELS), len(BALANCED_LABELS) + 1])
def test_split_rejects_val_size_out_of_range(val_size):
    with pytest.raises(UserError, match=rf"^data\.val_size = {val_size} is invalid: use 1 to 4999 "):
        stratified_split(BALANCED_LABELS, val_size, seed=0)


# --- random_crop ------------------------------------------------------------------------------


def crop_offsets(padded: torch.Tensor, cropped: torch.Tensor, padding: int) -> list[list[tuple[int, int]]]:
    """For each cropped image, every (row, col) offset whose window of the padded image equals it."""
    height, width = cropped.shape[-2:]
    offsets = [(row, col) for row in range(2 * padding + 1) for col in range(2 * padding + 1)]
    return [
        [
            (row, col)
            for row, col in offsets
            if torch.equal(padded[index, :, row : row + height, col : col + width], cropped[index])
        ]
        for index in range(cropped.shape[0])
    ]


def test_crop_is_a_window_of_the_zero_padded_image():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=seeded(0))
    padding = 2
    cropped = random_crop(images, padding, seeded(1))
    assert cropped.shape == images.shape
    assert cropped.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    for index, matches in enumerate(crop_offsets(padded, cropped, padding)):
        assert matches, f"image {index} is no window of its padded input"


def test_crop_offsets_differ_per_image_and_reach_every_shift():
    padding = 2
    images = distinct_pixel_image(3, 6).expand(400, 3, 6, 6).contiguous()
    cropped = random_crop(images, padding, seeded(0))
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offsets = crop_offsets(padded, cropped, padding)
    assert all(len(matches) == 1 for matches in offsets)  # distinct pixels: exactly one window fits
    assert {matches[0] for matches in offsets} == {(row, col) for row in range(5) for col in range(5)}


def test_crops_of_identical_images_are_not_all_equal():
    images = distinct_pixel_image(3, 8).expand(64, 3, 8, 8).contiguous()
    cropped = random_crop(images, 4, seeded(0))
    assert len(torch.unique(cropped.flatten(1), dim=0)) > 1


def test_crop_is_seeded_and_padding_zero_is_identity():
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=seeded(0))
    assert torch.equal(random_crop(images, 4, seeded(7)), random_crop(images, 4, seeded(7)))
    assert not torch.equal(random_crop(images, 4, seeded(7)), random_crop(images, 4, seeded(8)))
    assert torch.equal(random_crop(images, 0, seeded(7)), images)


# --- random_flip ------------------------------------------------------------------------------


def test_flip_mirrors_about_half_and_is_seeded():
    images = torch.randint(0, 256, (2000, 3, 4, 4), dtype=torch.uint8, generator=seeded(0))
    mirrored = images.flip(3)
    assert not any(torch.equal(image, mirror) for image, mirror in zip(images, mirrored))  # every flip is visible
    flipped = random_flip(images, seeded(1))
    assert flipped.shape == images.shape
    unchanged = (flipped == images).flatten(1).all(dim=1)
    is_mirror = (flipped == mirrored).flatten(1).all(dim=1)
    assert torch.all(unchanged ^ is_mirror)
    assert 800 <= int(is_mirror.sum()) <= 1200
    assert torch.equal(random_flip(images, seeded(1)), flipped)
    assert not torch.equal(random_flip(images, seeded(2)), flipped)


# --- normalize --------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [32, 64])
def test_normalize_shape_dtype_and_values(image_size):
    mean_pixels = torch.tensor([round(255 * mean) for mean in IMAGENET_MEAN], dtype=torch.uint8)
    images = mean_pixels.view(1, 3, 1, 1).expand(4, 3, 32, 32).contiguous()
    images[1] = 255
    images[2] = 0
    normalized = normalize(images, image_size, IMAGENET_MEAN, IMAGENET_STD)
    assert normalized.dtype == torch.float32
    assert normalized.shape == (4, 3, image_size, image_size)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert_close(normalized[0], torch.zeros(3, image_size, image_size), atol=1e-2, rtol=0)
    assert_close(normalized[1], ((1 - mean) / std).expand(3, image_size, image_size))
    assert_close(normalized[2], (-mean / std).expand(3, image_size, image_size))
    assert images[0, 0, 0, 0] == mean_pixels[0]  # the uint8 input is left as it was


# --- shuffled_batches and epoch_generator -----------------------------------------------------


def test_shuffled_batches_are_full_unique_and_reproducible_per_epoch():
    batches = shuffled_batches(1000, 64, epoch_generator(0, 0, CPU))
    assert len(batches) == 15  # 1000 // 64; the 40 left over wait for another epoch
    assert all(batch.shape == (64,) and batch.dtype == torch.int64 for batch in batches)
    indices = torch.cat(batches)
    assert len(torch.unique(indices)) == 960
    assert int(indices.min()) >= 0 and int(indices.max()) < 1000
    same = shuffled_batches(1000, 64, epoch_generator(0, 0, CPU))
    assert all(torch.equal(first, second) for first, second in zip(batches, same))
    next_epoch = shuffled_batches(1000, 64, epoch_generator(0, 1, CPU))
    other_seed = shuffled_batches(1000, 64, epoch_generator(1, 0, CPU))
    assert not torch.equal(torch.cat(next_epoch), indices)
    assert not torch.equal(torch.cat(other_seed), indices)


def test_fewer_images_than_a_batch_still_give_one_batch():
    (batch,) = shuffled_batches(10, 64, epoch_generator(0, 0, CPU))
    assert torch.equal(torch.sort(batch).values, torch.arange(10))


# --- load_prepared ----------------------------------------------------------------------------


def test_load_prepared_round_trips_what_prepare_writes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, size in (("train", 6), ("val", 3), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, NUM_CLASSES, size, dtype=np.int64)
    class_names = [f"class_{index}" for index in range(NUM_CLASSES)]
    coarse_class_names = [f"superclass_{index}" for index in range(NUM_CLASSES // 5)]
    superclasses = np.arange(NUM_CLASSES) % 20
    path = tmp_path / "cifar100.npz"
    with open(path, "wb") as file:  # as prepare.main writes it
        np.savez(
            file,
            **arrays,
            class_names=np.array(class_names),
            fine_to_coarse=superclasses,
            coarse_class_names=np.array(coarse_class_names),
        )

    prepared = load_prepared(path)
    assert prepared.class_names == tuple(class_names)
    assert prepared.coarse_class_names == tuple(coarse_class_names)
    np.testing.assert_array_equal(prepared.fine_to_coarse, superclasses)
    for key, array in arrays.items():
        loaded = getattr(prepared, key)
        assert loaded.dtype == array.dtype
        np.testing.assert_array_equal(loaded, array)
    train = prepared.split("train", CPU)
    assert len(train) == 6
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.equal(train.images, torch.from_numpy(arrays["train_images"]).permute(0, 3, 1, 2))  # (N, 3, 32, 32)
    assert torch.equal(train.labels, torch.from_numpy(arrays["train_labels"]))


def test_load_prepared_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(UserError, match="dvc repro prepare"):
        load_prepared(tmp_path / "missing.npz")


# --- superclasses -----------------------------------------------------------------------------


def test_fine_to_coarse_maps_each_class_to_its_superclass_and_marks_absent_ones():
    fine = np.array([3, 0, 3, 2, 0])
    coarse = np.array([1, 4, 1, 0, 4])
    np.testing.assert_array_equal(fine_to_coarse(fine, coarse, num_fine=5), [4, -1, 0, 1, -1])


def test_fine_class_in_two_superclasses_is_a_damaged_archive():
    with pytest.raises(
        UserError, match=r"fine class 2 has images in superclasses \[0, 3\].*dvc repro --force download"
    ):
        fine_to_coarse(np.array([2, 1, 2]), np.array([0, 1, 3]), num_fine=3)
