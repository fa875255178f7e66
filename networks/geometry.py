"""Per-frame geometry shared by the three graphs: affine sampling, similarity fits, boxes.

Coordinates are continuous pixel coordinates: pixel (i, j) covers [i, i+1) x [j, j+1), so its
centre is (i + 0.5, j + 0.5). Affine matrices are 2x3 and map output-pixel coordinates to source
coordinates. Everything here is traceable to ONNX with basic ops plus GridSample (opset 16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


@dataclass(frozen=True)
class GraphOptions:
    """How a graph is built for its target, from the same source.

    `fixed_shapes` (the tensorrt target): no shape depends on a value. Every face slot runs
    through the networks (empty ones are masked), and the blend covers the whole frame, so the
    graph has no NonZero, no value-dependent Range and no scatter. Without it (the CPU targets)
    the networks run on the slots that hold a face only and the blend covers a window around
    the faces: ONNX Runtime handles data-dependent shapes, and that is faster on a CPU.
    `fp16_networks` (tensorrt --fp16): the convolutional networks run in float16, with casts
    around them, while the geometry, the blend and the index math stay float32 and int64; with
    `trtexec --stronglyTyped` TensorRT keeps exactly these precisions.
    """

    fixed_shapes: bool = False
    fp16_networks: bool = False


class Precision(nn.Module):
    """A network run in float16 (inputs cast down, outputs cast back up) or as it is."""

    def __init__(self, network: nn.Module, fp16: bool) -> None:
        super().__init__()
        self.network = network.half() if fp16 else network
        self.fp16 = fp16

    def forward(self, *inputs: torch.Tensor) -> object:
        """The network's outputs (a tensor or a sequence of tensors), always float32."""
        if not self.fp16:
            return self.network(*inputs)
        outputs = self.network(*(tensor.half() for tensor in inputs))
        if isinstance(outputs, torch.Tensor):
            return outputs.float()
        return type(outputs)(output.float() for output in outputs)


def frame_to_planar(frame: torch.Tensor) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] with values 0..255 (channel order kept).

    The cast comes first: TensorRT takes uint8 only at the network's edges.
    """
    return frame.to(torch.float32).permute(0, 3, 1, 2)


def as_float32(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in float32: itself when it already is (so the exported float32 graphs hold no
    extra Cast), else a cast (fp16 autocast in eager PyTorch on a GPU)."""
    return tensor if tensor.dtype == torch.float32 else tensor.to(torch.float32)


def dims_of(tensor: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Dimensions start..end-1 of a tensor as an int64 tensor that stays dynamic in ONNX, on the
    tensor's device (a shape tensor is made on the CPU; exports trace on the CPU, unchanged)."""
    dims = torch._shape_as_tensor(tensor)[start:end]
    return dims if tensor.device.type == "cpu" else dims.to(tensor.device)


def shape_of(tensor: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Dimensions start..end-1 of a tensor as a float tensor that stays dynamic in ONNX."""
    return dims_of(tensor, start, end).to(torch.float32)


def pixel_centres(height: int, width: int) -> torch.Tensor:
    """[height*width, 3] rows of (x + 0.5, y + 0.5, 1) in row-major order (a constant)."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                            torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(height * width)], dim=1)


def to_grid_units(matrix: torch.Tensor, height_width: torch.Tensor) -> torch.Tensor:
    """Compose an affine [...,2,3] that outputs pixels with the map to GridSample's [-1,1] units."""
    scale = (2.0 / height_width.flip(0)).reshape(2, 1)
    shifted = matrix * scale
    return torch.cat([shifted[..., 0:2], shifted[..., 2:3] - 1.0], dim=-1)


def sample_affine(image: torch.Tensor, matrices: torch.Tensor, out_height: int,
                  out_width: int) -> torch.Tensor:
    """Crop K affine windows from each image with one GridSample.

    image [B,C,H,W]; matrices [B,K,2,3] mapping output coordinates to image coordinates.
    Returns [B*K, C, out_height, out_width]; samples outside the image are 0.
    """
    batch, channels = image.shape[0], image.shape[1]
    slots = matrices.shape[1]
    grid = torch.matmul(pixel_centres(out_height, out_width),
                        to_grid_units(matrices, shape_of(image, 2, 4)).transpose(2, 3))
    grid = grid.reshape(batch, slots * out_height, out_width, 2)
    crops = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    crops = crops.reshape(batch, channels, slots, out_height, out_width)
    return crops.permute(0, 2, 1, 3, 4).reshape(batch * slots, channels, out_height, out_width)


def sample_frame(frame: torch.Tensor, matrices: torch.Tensor, out_height: int, out_width: int,
                 graph: GraphOptions, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Crop K affine windows from each uint8 frame [B,H,W,3]: float [B*K,3,h,w], 0..255.

    Fixed shapes (TensorRT takes uint8 only at the graph's edges): the frame is cast and
    transposed whole, then one GridSample. Otherwise only the part of the frame the crops
    cover is cast (sample_window): the same samples, at a cost that follows the faces, not the
    frame. `valid` [B,K] marks the slots whose crops matter (default: all).
    """
    if graph.fixed_shapes:
        return sample_affine(frame_to_planar(frame), matrices, out_height, out_width)
    return sample_window(frame, matrices, out_height, out_width, valid)


def sample_window(frame: torch.Tensor, matrices: torch.Tensor, out_height: int, out_width: int,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """sample_affine of a uint8 frame [B,H,W,3] through the window every valid crop falls in.

    The window is the box around the crops' corners (one for the batch), grown by a pixel for
    the bilinear neighbours and kept inside the frame; it is taken from the uint8 frame with
    two gathers, cast and transposed, and GridSample runs on it with the matrices moved by its
    origin. Samples outside the frame stay 0, so the result is GridSample's on the whole frame.
    Crops of slots that are not valid come out of the same window (they are masked later).
    """
    corners = torch.tensor([[0.0, 0.0, 1.0], [out_width, 0.0, 1.0], [0.0, out_height, 1.0],
                            [out_width, out_height, 1.0]])
    # pixel positions stay float32: under fp16 autocast the matmul would round them to whole
    # pixels and the far fills below would overflow half
    points = as_float32(torch.matmul(corners, matrices.transpose(2, 3)))  # [B,K,4,2] (x, y)
    keep = (torch.ones(matrices.shape[:2], dtype=torch.bool) if valid is None
            else valid).reshape(matrices.shape[0], matrices.shape[1], 1, 1)
    low = torch.where(keep, points, torch.full_like(points, 1e9)).amin(dim=(0, 1, 2))
    high = torch.where(keep, points, torch.full_like(points, -1e9)).amax(dim=(0, 1, 2))
    size = dims_of(frame, 1, 3).flip(0)  # (W, H) int64
    start = torch.minimum((torch.floor(low) - 1.0).clamp(0.0, 1e9).to(torch.int64), size - 1)
    end = torch.maximum(torch.minimum(torch.ceil(high).clamp(0.0, 1e9).to(torch.int64) + 2,
                                      size), start + 1)
    columns = torch.arange(start[0], end[0])
    rows = torch.arange(start[1], end[1])
    window = frame.index_select(1, rows).index_select(2, columns)
    moved = torch.cat([matrices[..., 0:2],
                       matrices[..., 2:3] - start.to(torch.float32).reshape(2, 1)], dim=-1)
    return sample_affine(frame_to_planar(window), moved, out_height, out_width)


def sample_scaled(frame: torch.Tensor, matrix: torch.Tensor, out_height: int,
                  out_width: int) -> torch.Tensor:
    """sample_affine of a uint8 frame [B,H,W,3] through one axis-aligned map for the whole batch
    (matrix [2,3] with no rotation: the detector's letterbox): [B,3,h,w].

    A bilinear output pixel needs two source rows and two source columns, so only those are
    taken from the uint8 frame (two gathers: 2h rows, then 2w columns), cast and transposed;
    GridSample then interpolates between each pair. Rows and columns outside the frame are
    zeroed, as GridSample's padding would. The cost follows the output, not the frame.
    """
    size = dims_of(frame, 1, 3)  # (H, W) int64
    height, width = size[0], size[1]

    def pairs(count: int, scale: torch.Tensor, shift: torch.Tensor, limit: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source indices (2 per output, interleaved), their in-frame mask, and the sample
        position of each output among them (2i + fraction)."""
        position = (torch.arange(count, dtype=torch.float32) + 0.5) * scale + shift - 0.5
        first = torch.floor(position)
        fraction = position - first
        index = torch.stack([first, first + 1.0], dim=1).reshape(-1)  # [2*count], whole numbers
        last = (limit - 1).to(torch.float32)
        inside = (index >= 0.0) & (index <= last)
        clamped = torch.minimum(index.clamp(0.0, 1e9), last).to(torch.int64)
        return clamped, inside, torch.arange(count, dtype=torch.float32) * 2.0 + fraction

    rows, rows_inside, row_at = pairs(out_height, matrix[1, 1], matrix[1, 2], height)
    columns, columns_inside, column_at = pairs(out_width, matrix[0, 0], matrix[0, 2], width)
    taken = frame.index_select(1, rows).index_select(2, columns)  # [B,2h,2w,3] uint8
    planar = frame_to_planar(taken)
    planar = planar * rows_inside.to(torch.float32).reshape(1, 1, -1, 1)
    planar = planar * columns_inside.to(torch.float32).reshape(1, 1, 1, -1)
    # GridSample (align_corners=False) at index positions: grid = (index + 0.5) / size * 2 - 1
    grid_x = (column_at + 0.5) / (2.0 * out_width) * 2.0 - 1.0
    grid_y = (row_at + 0.5) / (2.0 * out_height) * 2.0 - 1.0
    grid = torch.stack([grid_x.reshape(1, -1).expand(out_height, out_width),
                        grid_y.reshape(-1, 1).expand(out_height, out_width)], dim=-1)
    grid = grid.unsqueeze(0).expand(frame.shape[0], out_height, out_width, 2)
    return F.grid_sample(planar, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def rotated_rect_matrix(centre: torch.Tensor, size: torch.Tensor, direction: torch.Tensor,
                        out_size: int) -> torch.Tensor:
    """Affine [...,2,3] from an out_size square to a rotated square of side `size` at `centre`.

    centre [...,2], size [...]; direction [...,2] is where the square's x axis points in the image
    (any length; a zero vector means unrotated).
    """
    length = direction.norm(dim=-1)
    unrotated = torch.stack([torch.ones_like(length), torch.zeros_like(length)], dim=-1)
    safe = torch.where((length > 1e-6).unsqueeze(-1), direction, unrotated)
    unit = safe / safe.norm(dim=-1, keepdim=True)
    scale = size / out_size
    cos, sin = unit[..., 0] * scale, unit[..., 1] * scale
    half = out_size / 2.0
    tx = centre[..., 0] - (cos * half - sin * half)
    ty = centre[..., 1] - (sin * half + cos * half)
    row_x = torch.stack([cos, -sin, tx], dim=-1)
    row_y = torch.stack([sin, cos, ty], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)


def select_rows(values: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of values [N,...] where keep [N] is true, and their indices; row 0 always comes along.

    Lets a network run only on the face slots that hold a face (the batch of crops shrinks to
    what is there) while never becoming empty. Data-dependent (NonZero): CPU targets only.
    """
    first = torch.arange(keep.shape[0]) == 0
    index = torch.nonzero(keep | first).reshape(-1)
    return values[index], index


def scatter_rows(rows: torch.Tensor, index: torch.Tensor, count: torch.Tensor | int
                 ) -> torch.Tensor:
    """Inverse of select_rows: rows [M,...] placed at index in zeros [count,...]."""
    shape = [count, *rows.shape[1:]]
    return torch.zeros(shape, dtype=rows.dtype).index_put((index,), rows)


def apply_affine(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """points [...,N,2] through affine [...,2,3] -> [...,N,2]."""
    return torch.matmul(points, matrix[..., :2].transpose(-1, -2)) + matrix[..., 2].unsqueeze(-2)


def similarity_fit(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Closed-form least-squares similarity (scale, rotation, shift) taking source to target.

    source, target [...,N,2]. Returns the affine [...,2,3]. A degenerate source (all points equal)
    gives a zero linear part instead of NaN.
    """
    source_mean = source.mean(dim=-2, keepdim=True)
    target_mean = target.mean(dim=-2, keepdim=True)
    s = source - source_mean
    t = target - target_mean
    norm = (s * s).sum(dim=(-1, -2)).clamp_min(1e-6)
    a = (s[..., 0] * t[..., 0] + s[..., 1] * t[..., 1]).sum(dim=-1) / norm
    b = (s[..., 0] * t[..., 1] - s[..., 1] * t[..., 0]).sum(dim=-1) / norm
    sx, sy = source_mean[..., 0, 0], source_mean[..., 0, 1]
    tx = target_mean[..., 0, 0] - (a * sx - b * sy)
    ty = target_mean[..., 0, 1] - (b * sx + a * sy)
    return torch.stack([torch.stack([a, -b, tx], dim=-1), torch.stack([b, a, ty], dim=-1)], dim=-2)


def invert_similarity(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of a similarity affine [...,2,3] (zero stays zero instead of NaN)."""
    a, b = matrix[..., 0, 0], matrix[..., 1, 0]
    norm = (a * a + b * b).clamp_min(1e-12)
    ia, ib = a / norm, -b / norm
    tx, ty = matrix[..., 0, 2], matrix[..., 1, 2]
    itx = -(ia * tx - ib * ty)
    ity = -(ib * tx + ia * ty)
    return torch.stack([torch.stack([ia, -ib, itx], dim=-1),
                        torch.stack([ib, ia, ity], dim=-1)], dim=-2)


def box_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of boxes [...,N,4] (x1,y1,x2,y2) -> [...,N,N]."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    area = (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0)
    left = torch.maximum(x1.unsqueeze(-1), x1.unsqueeze(-2))
    top = torch.maximum(y1.unsqueeze(-1), y1.unsqueeze(-2))
    right = torch.minimum(x2.unsqueeze(-1), x2.unsqueeze(-2))
    bottom = torch.minimum(y2.unsqueeze(-1), y2.unsqueeze(-2))
    inter = (right - left).clamp_min(0) * (bottom - top).clamp_min(0)
    union = area.unsqueeze(-1) + area.unsqueeze(-2) - inter
    return inter / union.clamp_min(1e-9)


def gather_slots(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """values [B,N,...], indices [B,K] -> [B,K,...] (per-batch gather along dim 1)."""
    shape = indices.shape + (1,) * (values.dim() - 2)
    expanded = indices.reshape(shape).expand(*indices.shape, *values.shape[2:])
    return torch.gather(values, 1, expanded)
