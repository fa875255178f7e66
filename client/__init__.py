"""The async gRPC streaming client (`swaptron stream`)."""
