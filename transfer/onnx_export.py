"""Write a trained model file as ONNX and check that onnxruntime computes what PyTorch does.

The graph takes float NCHW input already normalised, exactly like the PyTorch model, with a dynamic
batch dimension; class names, mean/std, image size and strategy sit in the ONNX metadata.
"""

import io
import json

import onnx
import onnxruntime
import torch

from transfer import paths
from transfer.atomic import atomic_path
from transfer.errors import UserError
from transfer.model import build_inference_network
from transfer.model_file import load_model_file

CHECK_BATCH = 4  # images in the self-check batch; 4 also shows the batch dimension is not fixed at export's 2
CHECK_SEED = 0
MAX_ABS_DIFF = 1e-4  # logits; fp32 kernels of both runtimes differ by ~1e-6 on ResNet18


def onnx_bytes(net: torch.nn.Module, image_size: int, metadata: dict[str, str]) -> bytes:
    """The network as a serialised ONNX model with a dynamic batch dimension and string metadata."""
    example = torch.zeros(2, 3, image_size, image_size)
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (example,),
        buffer,
        input_names=["images"],
        output_names=["logits"],
        dynamo=False,
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
    )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def onnx_metadata(checkpoint: dict) -> dict[str, str]:
    """What a user needs beside the graph: class names, normalisation and which strategy made it."""
    normalization = checkpoint["normalization"]
    return {
        "class_names": json.dumps(checkpoint["class_names"]),
        "mean": json.dumps(normalization["mean"]),
        "std": json.dumps(normalization["std"]),
        "image_size": str(normalization["image_size"]),
        "strategy": checkpoint["strategy"],
    }


def max_abs_difference(net: torch.nn.Module, model: bytes, image_size: int) -> float:
    """Largest |logit| difference between PyTorch and onnxruntime on a fixed seeded batch."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    inputs = torch.randn(CHECK_BATCH, 3, image_size, image_size, generator=generator)
    with torch.inference_mode():
        expected = net(inputs).numpy()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"images": inputs.numpy()})
    return float(abs(actual - expected).max())


def export(strategy_name: str) -> None:
    """Write models/<strategy>.onnx, only if onnxruntime agrees with PyTorch within MAX_ABS_DIFF."""
    checkpoint = load_model_file(paths.model_path(strategy_name))
    net = build_inference_network(checkpoint)
    image_size = checkpoint["normalization"]["image_size"]
    model = onnx_bytes(net, image_size, onnx_metadata(checkpoint))
    difference = max_abs_difference(net, model, image_size)
    if difference > MAX_ABS_DIFF:
        raise UserError(
            f"export@{strategy_name}: onnxruntime and PyTorch logits differ by {difference:.3g} > {MAX_ABS_DIFF}; "
            "no ONNX file written"
        )
    with atomic_path(paths.onnx_path(strategy_name)) as temp_path:
        temp_path.write_bytes(model)
