"""What a batch of images goes through before the network: random crop and flip (training only), then normalisation.

The whole input pipeline in one place, as torchvision keeps it in its presets: a reader looking for
the crop, the flip or the mean/std finds them here. Everything runs on uint8 batches on the device.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from transfer.config import AugmentConfig

# torchvision's ImageNet statistics: the pretrained weights expect inputs normalised with them,
# and scratch uses the same so that every strategy sees identical inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def augmented(images: torch.Tensor, augmentation: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random crop and flip of a uint8 batch (B, C, H, W), each image drawing its own randomness."""
    images = random_crop(images, augmentation.crop_padding, generator)
    if augmentation.horizontal_flip:
        images = random_flip(images, generator)
    return images


def normalize(images: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, S, S), resized when S differs, then (x / 255 - mean) / std per channel.

    The one normalisation of the project: training, export's model file and predict all call it, so
    a model sees at inference exactly the numbers it trained on. (x / 255 - mean) / std is applied
    as one scale and one shift, two passes over the batch instead of three; resizing first is
    equivalent because bilinear interpolation is linear. The memory layout of images (e.g.
    channels_last) is kept.
    """
    pixels = images.float()  # a new tensor: the in-place ops below never touch the caller's
    if image_size != pixels.shape[-1]:
        pixels = F.interpolate(
            pixels, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False
        )
    mean_tensor = torch.tensor(mean, device=pixels.device).view(1, 3, 1, 1)
    std_tensor = torch.tensor(std, device=pixels.device).view(1, 3, 1, 1)
    return pixels.mul_(1.0 / (255.0 * std_tensor)).sub_(mean_tensor / std_tensor)


CIFAR_STORED_SIZE = 32  # px: what a model file written before stored_size was recorded trained on


@dataclass(frozen=True)
class Normalization:
    """The input a network expects: stored and input size, per-channel statistics (a model file's `normalization`).

    stored_size is the side of the square uint8 images training read (CIFAR's 32, or a folder's
    data.stored_size); image_size is the network input they are resized to per batch.
    """

    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    stored_size: int = CIFAR_STORED_SIZE

    @classmethod
    def from_record(cls, record: dict) -> "Normalization":
        """From a model file's `normalization` mapping."""
        stored_size = record.get("stored_size", CIFAR_STORED_SIZE)
        return cls(record["image_size"], tuple(record["mean"]), tuple(record["std"]), stored_size)

    def record(self) -> dict:
        """The mapping a model file stores: {"mean": [...], "std": [...], "image_size": S, "stored_size": T}."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "image_size": self.image_size,
            "stored_size": self.stored_size,
        }

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """normalize() with these settings."""
        return normalize(images, self.image_size, self.mean, self.std)
