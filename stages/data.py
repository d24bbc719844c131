"""The training data path: uint8 image tensors on the device, augmented and normalised a whole batch at a time."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stages.config import AugmentConfig
from stages.errors import UserError

# torchvision's ImageNet statistics: the pretrained weights expect inputs normalised with them,
# and scratch uses the same so that every strategy sees identical inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageSplit:
    """One split on the training device: images (N, 3, 32, 32) uint8, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class PreparedData:
    """What the prepare stage wrote: the three splits as numpy arrays plus class and superclass names."""

    train_images: np.ndarray  # (N, 32, 32, 3) uint8
    train_labels: np.ndarray  # (N,) int64
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    fine_to_coarse: np.ndarray  # (classes,) int64: each class's superclass, -1 for a class with no image
    coarse_class_names: tuple[str, ...]

    def split(self, name: str, device: torch.device) -> ImageSplit:
        """Split name ('train', 'val' or 'test') as channels-first uint8 tensors on device."""
        images = getattr(self, f"{name}_images")
        labels = getattr(self, f"{name}_labels")
        images_nchw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        return ImageSplit(images_nchw.to(device), torch.from_numpy(labels).long().to(device))


def load_prepared(path: Path) -> PreparedData:
    """Read the prepare stage's npz, or a UserError saying how to make it."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            fields = {key: arrays[key] for key in arrays.files}
    except FileNotFoundError:
        raise UserError(f"prepared data {path} is missing; run: dvc repro prepare") from None
    if "fine_to_coarse" not in fields:
        raise UserError(f"prepared data {path} predates superclass labels; run: dvc repro prepare")
    names = {key: tuple(str(name) for name in fields.pop(key)) for key in ("class_names", "coarse_class_names")}
    return PreparedData(**names, **fields)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """A generator for one epoch's shuffling and augmentation, a pure function of (seed, epoch).

    Seeding per epoch, rather than carrying one stream across epochs, makes any epoch
    reproducible on its own (what resuming after an interruption needs).
    """
    (state,) = np.random.SeedSequence([seed, epoch]).generate_state(1)
    return torch.Generator(device=device).manual_seed(int(state))


def shuffled_batches(num_images: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index tensors of one epoch's full batches in a seeded random order.

    The last partial batch is dropped (a new permutation each epoch means every image is still
    seen), so BatchNorm never trains on a stray batch of one. A training set smaller than one
    batch is a single batch of everything.
    """
    permutation = torch.randperm(num_images, generator=generator, device=generator.device)
    if num_images < batch_size:
        return [permutation]
    num_batches = num_images // batch_size
    return list(permutation[: num_batches * batch_size].view(num_batches, batch_size))


def ordered_batches(num_images: int, batch_size: int, device: torch.device) -> list[torch.Tensor]:
    """Index tensors covering every image once, in order (for evaluation)."""
    return list(torch.arange(num_images, device=device).split(batch_size))


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop of (B, C, H, W) after zero-padding each side by padding px."""
    if padding == 0:
        return images
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device=generator.device)
    device = images.device
    rows = offsets[0, :, None] + torch.arange(height, device=device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(width, device=device)  # (B, W)
    batch_index = torch.arange(batch, device=device)[:, None, None, None]
    channel_index = torch.arange(channels, device=device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of (B, C, H, W) left-right with probability 0.5."""
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def augment(images: torch.Tensor, augment_config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random crop and flip of a uint8 batch (B, C, H, W), each image drawing its own randomness."""
    images = random_crop(images, augment_config.crop_padding, generator)
    if augment_config.horizontal_flip:
        images = random_flip(images, generator)
    return images


def normalize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (B, 3, 32, 32) -> float (B, 3, S, S), resized when S > 32, normalised with ImageNet statistics.

    (x / 255 - mean) / std is applied as one scale and one shift, two passes over the batch instead
    of three; resizing first is equivalent because bilinear interpolation is linear. The memory
    layout of images (e.g. channels_last) is kept.
    """
    pixels = images.float()  # a new tensor: the in-place ops below never touch the caller's
    if image_size != pixels.shape[-1]:
        pixels = F.interpolate(
            pixels, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False
        )
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(1, 3, 1, 1)
    return pixels.mul_(1.0 / (255.0 * std)).sub_(mean / std)
