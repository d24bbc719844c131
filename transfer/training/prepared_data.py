"""The prepared splits as uint8 tensors on the device, and the seeded order in which an epoch visits them."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from transfer.errors import UserError

# Of the accelerator memory free when a split is placed, the most its images may take: the network, its
# activations, gradients and optimizer state need the rest (a ResNet50 batch of 128 at 224 px alone takes GBs).
DEVICE_DATA_FRACTION = 0.25


@dataclass(frozen=True)
class ImageSplit:
    """One split: images (N, 3, S, S) uint8 at the stored size S, labels (N,) int64 on the training device.

    The images sit on the training device too when they fit (see images_fit_on); otherwise they stay
    in host memory and each batch is copied over, the same values either way.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """The images at indices (on the training device), on the training device."""
        if self.images.device == indices.device:
            return self.images[indices]
        return self.images[indices.cpu()].to(indices.device, non_blocking=True)


def images_fit_on(device: torch.device, num_bytes: int) -> bool:
    """Whether a split's images may live on device: on CUDA, within DEVICE_DATA_FRACTION of its free memory.

    On the CPU host memory is where they are already, and MPS shares it with the host: always.
    """
    if device.type != "cuda":
        return True
    free_bytes, _total = torch.cuda.mem_get_info(device)
    return num_bytes <= DEVICE_DATA_FRACTION * free_bytes


@dataclass(frozen=True)
class PreparedData:
    """What the prepare stage wrote: the three splits as numpy arrays plus class and superclass names."""

    train_images: np.ndarray  # (N, S, S, 3) uint8: S is the stored size (CIFAR: 32)
    train_labels: np.ndarray  # (N,) int64
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    fine_to_coarse: np.ndarray  # (classes,) int64: each class's superclass, -1 for a class with no image
    coarse_class_names: tuple[str, ...]

    @property
    def stored_size(self) -> int:
        """The side of every stored image, in px."""
        return self.train_images.shape[1]

    def split(self, name: str, device: torch.device) -> ImageSplit:
        """Split name ('train', 'val' or 'test') as channels-first uint8 tensors on device."""
        images = getattr(self, f"{name}_images")
        labels = getattr(self, f"{name}_labels")
        images_nchw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        # Too big for the device: left in (pageable) host memory; pinning would copy the whole split once more.
        placed = images_nchw.to(device) if images_fit_on(device, images_nchw.nbytes) else images_nchw
        return ImageSplit(placed, torch.from_numpy(labels).long().to(device))


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
