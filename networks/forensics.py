"""Forgery detectors: is an aligned face crop real or swapped?

Every detector takes `faces`, float32 [N,3,S,S], BGR, in [0,1] (the swapper's aligned crops) and
returns logits [N] (> 0 means fake). Channel order and normalisation happen inside the model, so
the exported graph takes the same tensor the swapper produces. Every graph has fixed shapes apart
from the batch axis and uses only ops TensorRT imports (Conv, BatchNormalization, ReLU, Clip,
LeakyRelu, MaxPool, GlobalAveragePool, Gemm, Add, Concat, Pad, Slice, Reshape).

- `Meso4`: MesoNet's Meso-4 (Afchar et al. 2018), trained from scratch.
- `Dldfd`: the DLDFD stem (three parallel dilated 3x3 convolutions reduced by a 1x1 convolution)
  before a ResNet-50, trained from scratch.
- `SbiDetector`: ImageNet EfficientNet-Lite0 behind a zero-initialised residual `DeepStem`.
- `MeanLogit`: several detectors of one input size (training seeds) as one, the mean of their
  logits (Add and Mul in the graph).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

DETECTOR_NAMES = ("meso4", "dldfd", "sbi")
MAX_MEMBERS = 16  # detectors one MeanLogit file may hold
DEFAULT_INPUT_SIZE = {"meso4": 256, "dldfd": 224, "sbi": 128}  # sbi: within 10 ms per face

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB in [0,1]
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
RESNET_FEATURES = RESNET50_WIDTHS[-1] * BOTTLENECK_EXPANSION

# EfficientNet-Lite0 stages: (expand ratio, kernel, stride, channels in, channels out, repeats)
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
LITE0_STEM = 32
LITE0_FEATURES = 1280
LITE0_CLASSES = 1000
# Found by experiment: over 108 crops of 9 labelled photos (skimage, OpenCV samples), "SAME"
# padding, eps 1e-3 and (x*255 - 127) / 128 gave the lowest true-class NLL (0.50 against 0.71
# symmetric, 0.58 eps 1e-5, 0.83 ImageNet mean/std) and the closest BatchNorm statistics; a
# TensorFlow port. (x - 0.5) / 0.5 is indistinguishable from (x*255 - 127) / 128.
LITE0_BN_EPS = 1e-3
LITE0_SAME_PADDING = True
LITE0_MEAN = (127.0 / 255.0,) * 3  # RGB in [0,1]
LITE0_STD = (128.0 / 255.0,) * 3


class FaceNormalization(nn.Module):
    """BGR faces in [0,1] -> RGB normalised as (rgb - mean) / std (mean, std given for RGB)."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(mean).reshape(1, 3, 1, 1))
        self.register_buffer("scale", 1.0 / torch.tensor(std).reshape(1, 3, 1, 1))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] BGR -> [N,3,S,S] normalised RGB."""
        rgb = torch.cat((faces[:, 2:3], faces[:, 1:2], faces[:, 0:1]), dim=1)
        return (rgb - self.mean) * self.scale


def check_faces(faces: torch.Tensor, input_size: int) -> None:
    """Raise ValueError unless `faces` is [N,3,input_size,input_size] (skipped while exporting,
    where the shapes are the ones given to the export)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return
    expected = (3, input_size, input_size)
    if faces.dim() != 4 or tuple(faces.shape[1:]) != expected:
        raise ValueError(f"faces must be [N,3,{input_size},{input_size}] (BGR in [0,1]), "
                         f"got {list(faces.shape)}")


# --- Meso-4 -------------------------------------------------------------------------------------


def meso_block(channels_in: int, channels_out: int, kernel: int, pool: int) -> nn.Sequential:
    """Meso-4 stage: "same" convolution, BatchNorm, ReLU and max pooling."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True), nn.MaxPool2d(pool))


class Meso4(nn.Module):
    """MesoNet's Meso-4 (Afchar et al. 2018): four small convolution stages and a 16-unit dense
    layer, on RGB in [0,1]. `input_size` must be a multiple of 32 (the stages divide it by 32)."""

    def __init__(self, input_size: int = 256) -> None:
        super().__init__()
        if input_size <= 0 or input_size % 32:
            raise ValueError(
                f"Meso4 input_size must be a positive multiple of 32, got {input_size}")
        self.input_size = input_size
        self.normalize = FaceNormalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.features = nn.Sequential(
            meso_block(3, 8, 3, 2), meso_block(8, 8, 5, 2),
            meso_block(8, 16, 5, 2), meso_block(16, 16, 5, 4))
        bottom = input_size // 32
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * bottom * bottom, 16),
            nn.LeakyReLU(0.1), nn.Dropout(0.5), nn.Linear(16, 1))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] BGR in [0,1] -> logits [N]."""
        check_faces(faces, self.input_size)
        return self.classifier(self.features(self.normalize(faces))).reshape(-1)


# --- ResNet-50 ----------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand, plus the shortcut."""

    def __init__(self, channels_in: int, width: int, stride: int) -> None:
        super().__init__()
        channels_out = width * BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(channels_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, channels_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(body(x) + shortcut(x))."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class ResNet50(nn.Module):
    """ResNet-50 without its classifier: [N,3,H,W] (already normalised) -> [N,2048] pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, RESNET50_WIDTHS[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(RESNET50_WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = RESNET50_WIDTHS[0]
        stages: list[nn.Module] = []
        for index, (blocks, width) in enumerate(zip(RESNET50_BLOCKS, RESNET50_WIDTHS, strict=True)):
            stride = 1 if index == 0 else 2
            layers = []
            for block in range(blocks):
                layers.append(Bottleneck(channels, width, stride if block == 0 else 1))
                channels = width * BOTTLENECK_EXPANSION
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions, unit BatchNorm, zero gamma on each block's last BN (each
        residual block starts as the identity)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] -> [N,2048]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1)


# --- DLDFD --------------------------------------------------------------------------------------


class DeepStem(nn.Module):
    """DLDFD's stem: three parallel 3x3x64 convolutions (dilations 1, 2, 3, each with BatchNorm and
    ReLU), concatenated (192 channels) and reduced to 3 channels by a 1x1 convolution, so that
    it feeds a standard 3-channel backbone. Same spatial size in and out."""

    def __init__(self, channels: int = 3, width: int = 64, zero_init: bool = False) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for dilation in (1, 2, 3))
        self.reduce = nn.Conv2d(3 * width, channels, 1)
        if zero_init:
            self.zero_init_output()

    def zero_init_output(self) -> None:
        """Zero the final 1x1 convolution: the stem outputs zeros, so `x + stem(x)` starts as x."""
        nn.init.zeros_(self.reduce.weight)
        nn.init.zeros_(self.reduce.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N,C,H,W] -> [N,C,H,W]."""
        return self.reduce(torch.cat([branch(x) for branch in self.branches], dim=1))


class Dldfd(nn.Module):
    """DLDFD detector: `DeepStem` on the ImageNet-normalised RGB face, ResNet-50, one logit."""

    def __init__(self, input_size: int = 224) -> None:
        super().__init__()
        if input_size < 32:
            raise ValueError(f"Dldfd input_size must be at least 32, got {input_size}")
        self.input_size = input_size
        self.normalize = FaceNormalization(IMAGENET_MEAN, IMAGENET_STD)
        self.stem = DeepStem()
        self.backbone = ResNet50()
        self.head = nn.Linear(RESNET_FEATURES, 1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] BGR in [0,1] -> logits [N]."""
        check_faces(faces, self.input_size)
        features = self.backbone(self.stem(self.normalize(faces)))
        return self.head(features).reshape(-1)


# --- EfficientNet-Lite0 -------------------------------------------------------------------------


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis: output ceil(size / stride), the odd
    pixel of padding goes after."""
    if size <= 0 or kernel <= 0 or stride <= 0:
        raise ValueError(
            f"size, kernel and stride must be positive, got {size}, {kernel}, {stride}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class PaddedConv(nn.Module):
    """Bias-free convolution with its padding fixed for a known input size: TensorFlow "SAME"
    (the odd pixel after, at stride 2) or symmetric k//2. Symmetric amounts stay inside the Conv;
    asymmetric ones are an explicit zero pad of fixed amounts before it."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int,
                 size: int, groups: int = 1) -> None:
        super().__init__()
        if LITE0_SAME_PADDING:
            before, after = same_padding(size, kernel, stride)
        else:
            before = after = kernel // 2
        symmetric = before == after
        self.pad: nn.Module = (nn.Identity() if symmetric
                               else nn.ZeroPad2d((before, after, before, after)))
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, stride=stride,
                              padding=before if symmetric else 0, groups=groups, bias=False)
        self.size_out = (size + before + after - kernel) // stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, then convolve."""
        return self.conv(self.pad(x))


class MBConv(nn.Module):
    """EfficientNet-Lite inverted residual block (no squeeze-excitation, ReLU6). Parameter names
    follow the checkpoint: `_expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`,
    `_bn2`."""

    def __init__(self, expand: int, kernel: int, stride: int, channels_in: int,
                 channels_out: int, size: int) -> None:
        super().__init__()
        hidden = channels_in * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=LITE0_BN_EPS)
        depthwise = PaddedConv(hidden, hidden, kernel, stride, size, groups=hidden)
        self._depthwise_pad = depthwise.pad
        self._depthwise_conv = depthwise.conv
        self._bn1 = nn.BatchNorm2d(hidden, eps=LITE0_BN_EPS)
        self._project_conv = nn.Conv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(channels_out, eps=LITE0_BN_EPS)
        self.activation = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and channels_in == channels_out
        self.size_out = depthwise.size_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N,Cin,H,W] -> [N,Cout,H/stride,W/stride]."""
        out = self.activation(self._bn0(self._expand_conv(x))) if self.has_expansion else x
        out = self.activation(self._bn1(self._depthwise_conv(self._depthwise_pad(out))))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the state-dict layout of the ImageNet checkpoint
    (efficientnet-lite0-57934424.pth). Takes RGB normalised with `LITE0_MEAN`/`LITE0_STD`
    (`FaceNormalization(LITE0_MEAN, LITE0_STD)`) at `input_size`x`input_size`, the size its fixed
    "SAME" paddings are computed for. `num_classes=0` builds it without the classifier."""

    def __init__(self, input_size: int = 224, num_classes: int = LITE0_CLASSES) -> None:
        super().__init__()
        if input_size < 32:
            raise ValueError(f"EfficientNetLite0 input_size must be at least 32, got {input_size}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be 0 (no classifier) or more, got {num_classes}")
        self.input_size = input_size
        self.num_classes = num_classes
        stem = PaddedConv(3, LITE0_STEM, 3, 2, input_size)
        self._stem_pad = stem.pad
        self._conv_stem = stem.conv
        self._bn0 = nn.BatchNorm2d(LITE0_STEM, eps=LITE0_BN_EPS)
        size = stem.size_out
        blocks = []
        for expand, kernel, stride, channels_in, channels_out, repeats in LITE0_STAGES:
            for repeat in range(repeats):
                block = MBConv(expand, kernel, stride if repeat == 0 else 1,
                               channels_in if repeat == 0 else channels_out, channels_out, size)
                size = block.size_out
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(LITE0_STAGES[-1][4], LITE0_FEATURES, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(LITE0_FEATURES, eps=LITE0_BN_EPS)
        self.activation = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(0.2)
        if num_classes:
            self._fc = nn.Linear(LITE0_FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] normalised RGB -> [N,1280] pooled features."""
        x = self.activation(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        x = self.activation(self._bn1(self._conv_head(x)))
        return torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] normalised RGB -> [N,num_classes] logits ([N,1280] features without a
        classifier)."""
        check_faces(x, self.input_size)
        features = self.features(x)
        if not self.num_classes:
            return features
        return self._fc(self._dropout(features))


def load_efficientnet_lite0(path: Path, input_size: int,
                            num_classes: int = LITE0_CLASSES) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the ImageNet checkpoint at `path`, loaded strictly (with
    `num_classes=0` every checkpoint tensor but the classifier's)."""
    if num_classes not in (0, LITE0_CLASSES):
        raise ValueError(f"the checkpoint classifies {LITE0_CLASSES} classes: num_classes must "
                         f"be {LITE0_CLASSES} or 0 (no classifier), got {num_classes}")
    model = EfficientNetLite0(input_size, num_classes)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not num_classes:
        state = {key: value for key, value in state.items() if not key.startswith("_fc.")}
    model.load_state_dict(state, strict=True)
    return model


# --- SBI detector -------------------------------------------------------------------------------


class SbiDetector(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights when `pretrained` is given) behind a residual
    `DeepStem` that starts at zero, so the backbone first sees exactly its usual input; dropout
    0.2 and one logit."""

    def __init__(self, input_size: int = 224, pretrained: Path | None = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.normalize = FaceNormalization(LITE0_MEAN, LITE0_STD)
        self.stem = DeepStem(zero_init=True)
        self.backbone = (EfficientNetLite0(input_size, num_classes=0) if pretrained is None
                         else load_efficientnet_lite0(pretrained, input_size, num_classes=0))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(LITE0_FEATURES, 1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] BGR in [0,1] -> logits [N]."""
        check_faces(faces, self.input_size)
        x = self.normalize(faces)
        features = self.backbone.features(x + self.stem(x))
        return self.head(self.dropout(features)).reshape(-1)


# --- Building and counting ----------------------------------------------------------------------


def build_detector(name: str, input_size: int | None = None,
                   pretrained: Path | None = None) -> nn.Module:
    """The detector `name` (one of DETECTOR_NAMES) at `input_size` (its DEFAULT_INPUT_SIZE when
    None); `pretrained` (the EfficientNet-Lite0 checkpoint) is for "sbi" only."""
    if name not in DETECTOR_NAMES:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
    size = DEFAULT_INPUT_SIZE[name] if input_size is None else input_size
    if pretrained is not None and name != "sbi":
        raise ValueError(f"detector {name!r} has no pretrained weights; only 'sbi' takes them")
    if name == "meso4":
        return Meso4(size)
    if name == "dldfd":
        return Dldfd(size)
    return SbiDetector(size, pretrained)


class MeanLogit(nn.Module):
    """Several detectors of one input size as one detector: the mean of their logits."""

    def __init__(self, networks: list[nn.Module]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("MeanLogit needs at least one detector")
        self.networks = nn.ModuleList(networks)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """[N,3,S,S] BGR in [0,1] -> the members' mean logit [N]."""
        total = self.networks[0](faces)
        for network in self.networks[1:]:
            total = total + network(faces)
        return total * (1.0 / len(self.networks))


def build_members(name: str, input_size: int | None = None, members: int = 1) -> nn.Module:
    """The detector `name` alone (`members` 1) or a MeanLogit of `members` of them, untrained:
    the form a detector file's state dict loads into."""
    if not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"a detector file holds 1 to {MAX_MEMBERS} members, got {members}")
    if members == 1:
        return build_detector(name, input_size)
    return MeanLogit([build_detector(name, input_size) for _ in range(members)])


def multiply_accumulates(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one face through `model` (convolutions and linear layers only),
    counted with forward hooks on a zero face [1,3,S,S]."""
    total = 0

    def count_conv(module: nn.Conv2d, _inputs: tuple[torch.Tensor, ...],
                   output: torch.Tensor) -> None:
        nonlocal total
        kernel_h, kernel_w = module.kernel_size
        total += output.numel() * module.in_channels // module.groups * kernel_h * kernel_w

    def count_linear(module: nn.Linear, _inputs: tuple[torch.Tensor, ...],
                     output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(count_conv))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(count_linear))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def dldfd_widened_stem_extra_macs(input_size: int = 224) -> int:
    """Extra MACs of the other reading of DLDFD, where the 192 concatenated channels feed a
    widened 7x7 stride-2 ResNet stem (192 -> 64) instead of the 1x1 reduction to 3 channels."""
    stem_out = (input_size + 2 * 3 - 7) // 2 + 1
    return (7 * 7 * 192 * 64 - 7 * 7 * 3 * 64) * stem_out * stem_out
