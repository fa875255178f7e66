"""ONNX export of the networks, the Triton repository configs, TensorRT profiles and checks."""
