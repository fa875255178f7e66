"""swaptron: real-time face swap served by NVIDIA Triton."""

__version__ = "0.1.0"
