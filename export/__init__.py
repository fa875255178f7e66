"""PyTorch modules -> ONNX -> Triton model repository (and TensorRT engines); training."""
