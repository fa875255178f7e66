"""The DFM cost bench (benchmarks/dfm.py), cheaply: a small SAEHD-shaped network is a valid DFM
at any batch, its MAC count is right, and the report renders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from swaptron.benchmarks import dfm

SMALL = dfm.SaehdShape(resolution=64, ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=4)


def test_a_small_saehd_shape_is_a_dfm_that_runs_batched(tmp_path: Path) -> None:
    path = tmp_path / "small.dfm"
    network = dfm.build_dfm(path, SMALL)
    assert network["resolution_read"] == 64 and network["deepfacelive_names"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    faces = np.random.default_rng(0).random((3, 64, 64, 3), np.float32)
    outputs = session.run(None, {dfm.INPUT_NAME: faces})
    assert [o.shape for o in outputs] == [(3, 64, 64, 1), (3, 64, 64, 3), (3, 64, 64, 1)]
    assert all(o.min() >= 0.0 and o.max() <= 1.0 for o in outputs)


def test_macs_count_convolutions_and_dense_layers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    assert dfm.count_macs(model, torch.zeros(2, 3, 8, 8)) == 8 * 8 * 4 * 27 + 256 * 5


def test_the_report_renders_every_row() -> None:
    row = {"frames": 4, "failed": 0, "fps": 10.0, "p50_ms": 90.0, "p95_ms": 120.0,
           "command": "swaptron stream"}
    results = {"date": "today", "arguments": "", "machine": {"cpu": "cpu", "cores": 2,
                                                            "onnxruntime": "1"},
               "network": {"archi": "df-ud", **SMALL.__dict__, "parameters": 1e6,
                           "gmacs_per_face": 1.0, "file_mb": 4.0},
               "in_process": [{"batch": 1, "threads": 1, "ms_per_run": 5.0, "ms_per_face": 5.0,
                               "faces_per_s": 200.0, "ms_min_max": [4.0, 6.0]}],
               "served": {"native": [row, row], "dfm": [row]}}
    text = dfm.markdown(results)
    assert text.count("| native |") == 2 and "| dfm | 1 |" in text
