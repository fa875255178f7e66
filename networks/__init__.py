"""The networks as PyTorch modules: the TFLite port of BlazeFace and FaceMesh, the detector,
landmarker and swapper graphs, the swap autoencoder, and their shared geometry."""
