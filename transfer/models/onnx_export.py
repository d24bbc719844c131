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
from transfer.models.model_file import load_model_file
from transfer.models.network import build_inference_network

CHECK_BATCH = 4  # images in the self-check batch; 4 also shows the batch dimension is not fixed at export's 2
CHECK_SEED = 0
# How far onnxruntime's logits may be from PyTorch's, as a multiple of the largest |logit| in the check batch.
# Both compute in fp32 but sum in different orders (other conv algorithms, BatchNorm folded into the conv), and
# each reordered sum of n terms may move by up to about n * eps of the terms' magnitude; through ResNet18's
# layers that compounds to about 1e-6 of the logits' scale (measured, at logit scales 0.8 and 77,000 alike).
# 2**8 eps (3.1e-5 relative) leaves 30x that, so no valid model fails however large its logits (an absolute
# 1e-4 failed one whose logits of about 8,000 differed by one fp32 ulp there, 2**-10). A wrong export fails:
# layer4's last conv off by 1% moves the logits by about 1.5e-3 of their scale (measured), 50x the bound.
# The scale is at least 1, so near-zero logits are held to 3.1e-5 absolute, not to a fraction of an ulp.
RELATIVE_TOLERANCE = 2**8 * float(torch.finfo(torch.float32).eps)


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
        "stored_size": str(normalization["stored_size"]),  # the square images are brought to before image_size
        "strategy": str(checkpoint.get("strategy", "")),  # provenance; model_file does not require it
    }


def logit_difference(net: torch.nn.Module, model: bytes, image_size: int) -> tuple[float, float]:
    """(largest |logit| difference between PyTorch and onnxruntime, largest |logit| of PyTorch) on a seeded batch."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    inputs = torch.randn(CHECK_BATCH, 3, image_size, image_size, generator=generator)
    with torch.inference_mode():
        expected = net(inputs).numpy()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"images": inputs.numpy()})
    return float(abs(actual - expected).max()), float(abs(expected).max())


def allowed_difference(logit_scale: float) -> float:
    """The largest logit difference a correct fp32 export may show, for logits up to logit_scale in size."""
    return RELATIVE_TOLERANCE * max(1.0, logit_scale)


def export(strategy_name: str) -> None:
    """Write models/<strategy>.onnx, only if onnxruntime agrees with PyTorch within allowed_difference."""
    checkpoint = load_model_file(paths.model_path(strategy_name))
    net = build_inference_network(checkpoint)
    image_size = checkpoint["normalization"]["image_size"]
    model = onnx_bytes(net, image_size, onnx_metadata(checkpoint))
    difference, logit_scale = logit_difference(net, model, image_size)
    allowed = allowed_difference(logit_scale)
    if difference > allowed:
        raise UserError(
            f"export@{strategy_name}: onnxruntime and PyTorch logits differ by {difference:.3g} > {allowed:.3g} "
            f"(logits up to {logit_scale:.3g}); no ONNX file written"
        )
    with atomic_path(paths.onnx_path(strategy_name)) as temp_path:
        temp_path.write_bytes(model)
