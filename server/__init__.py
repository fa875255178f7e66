"""The embedded Triton server: launcher (`swaptron serve`) and the Python-backend model host."""
