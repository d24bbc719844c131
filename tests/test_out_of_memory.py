"""A CUDA out-of-memory error is one line naming the setting that lowers memory use, not a traceback."""

from pathlib import Path

import pytest
import torch

from stages import predict
from tests.test_predict import model_checkpoint, write_image
from transfer.compute.device import out_of_memory_as_user_error
from transfer.errors import UserError

CUDA_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8.00 GiB total capacity)\nmore detail"


def test_training_out_of_memory_names_both_batch_sizes():
    with pytest.raises(UserError) as caught:
        with out_of_memory_as_user_error("train@deep"):
            raise torch.OutOfMemoryError(CUDA_MESSAGE)
    message = str(caught.value)
    assert message.startswith("train@deep: the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "strategy.batch_size" in message and "compute.eval_batch_size" in message and "\n" not in message


def test_other_errors_pass_through_unchanged():
    with pytest.raises(RuntimeError, match="a bug"):
        with out_of_memory_as_user_error("train@deep"):
            raise RuntimeError("a bug")


def test_predict_out_of_memory_names_batch_size_flag(tmp_path: Path, monkeypatch):
    model = tmp_path / "model.pt"
    torch.save(model_checkpoint(), model)
    image = write_image(tmp_path / "a.png", (32, 32))

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError(CUDA_MESSAGE)

    monkeypatch.setattr(predict, "top_classes", out_of_memory)
    with pytest.raises(UserError, match=r"^predict: the GPU ran out of memory .*; lower --batch-size$"):
        predict.main([str(model), str(image)])
