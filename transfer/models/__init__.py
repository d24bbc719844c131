"""The networks: the ResNet backbone, the strategy network built on it, model files, ONNX export and inference."""
