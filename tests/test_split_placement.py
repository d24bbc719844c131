"""A split too big for the GPU stays in host memory and its batches are copied over (the rule checked on a CPU)."""

import numpy as np
import torch

from transfer.training import prepared_data as data
from transfer.training.prepared_data import DEVICE_DATA_FRACTION, PreparedData, images_fit_on

GIB = 1024**3


def test_a_split_may_take_a_quarter_of_the_free_gpu_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (8 * GIB, 80 * GIB))  # (free, total)
    cuda = torch.device("cuda")
    assert images_fit_on(cuda, int(DEVICE_DATA_FRACTION * 8 * GIB))
    assert not images_fit_on(cuda, int(DEVICE_DATA_FRACTION * 8 * GIB) + 1)
    assert images_fit_on(torch.device("cpu"), 10**15)  # already in host memory: never moved


def test_a_split_left_on_the_host_gives_the_same_batches(monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (40, 24, 24, 3), dtype=np.uint8)  # any stored size
    labels = np.arange(40) % 4
    prepared = PreparedData(*(images, labels) * 3, tuple("abcd"), np.full(4, -1), ())
    resident = prepared.split("train", torch.device("cpu"))
    monkeypatch.setattr(data, "images_fit_on", lambda device, num_bytes: False)
    on_host = prepared.split("train", torch.device("cpu"))
    indices = torch.tensor([3, 0, 17, 39])
    assert torch.equal(on_host.batch(indices), resident.batch(indices))
    assert np.array_equal(on_host.batch(indices).permute(0, 2, 3, 1).numpy(), prepared.train_images[[3, 0, 17, 39]])
