"""The invisible mark's code, shared by the embedder, the reader graph and the client (numpy only).

The codeword (CODE_BITS) is the payload (a server id and the swapper's identity index) followed
by a keyed CRC-16, XORed with a keyed mask. Each codeword bit owns one pattern over a T x T tile
of frame pixels (tile_patterns): a keyed, random-signed set of DCT basis images of the key's
band, orthonormalised after the constant. The mark is anchored to the frame, not to the face:
the codeword's tile (codeword_tile), repeated over the frame from its top-left corner, is added
to the luma under the swapped face's blend mask, so no face alignment has to be found again to
read it. A reader high-passes the frame's luma, weighs it by a window over the face, folds it
onto one tile and projects it on each pattern: a soft bit, about +-1 when marked; `decode`
votes over up to MAX_FRAMES frames of one face and checks the CRC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SERVER_BITS = 16
IDENTITY_BITS = 8
CHECK_BITS = 16
CODE_BITS = SERVER_BITS + IDENTITY_BITS + CHECK_BITS
DEFAULT_SECRET = b"swaptron-mark-v1"  # the public key: any `swaptron scan` reads these marks
LUMA_BGR = (0.114, 0.587, 0.299)
CRC_POLY = 0x1021
VARIANTS = 1  # keyed masks per payload (one: the embedder adds the same tile to every face)
MAX_FRAMES = 24  # frames of one face a vote uses at most
MIN_CONFIDENCE = 0.25  # a face is marked when its CRC holds and the vote is at least this sure
SOFT_CLIP = 1.5  # one frame's soft bit counts at most this much in a vote
VOTE_ROUNDS = 3  # rounds of choosing each frame's variant against the running vote


@dataclass(frozen=True)
class MarkKey:
    """What embedder and reader share: the secret, the tile, the band and the strength.

    tile: the pattern's period in frame pixels; band: DCT frequency radius of the patterns in
    index units of the tile (radius r is a period of 2 * tile / r pixels); strength: each bit's
    amplitude (luma levels x unit-norm pattern per tile); highpass: the reader's Gaussian sigma
    (pixels), whose blur is taken off the luma before projecting; window: the reader's window
    half-axes as fractions of the face outline's; noise_box and noise_floor: the reader weighs
    each pixel by 1 / (the high-passed luma's mean square over a noise_box-pixel square +
    noise_floor), so the host's edges (eyes, mouth, hair) count less than its flat skin
    (noise_box 0: by the window alone).
    """

    secret: bytes = DEFAULT_SECRET
    tile: int = 64
    band: tuple[float, float] = (10.7, 21.0)
    strength: float = 30.0
    highpass: float = 3.0
    window: float = 0.8
    noise_box: int = 9
    noise_floor: float = 10.0

    def seed(self, purpose: str) -> int:
        """A 64-bit seed for one use of the secret (patterns, mask, CRC)."""
        digest = hashlib.sha256(self.secret + b"/" + purpose.encode()).digest()
        return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class MarkReading:
    """One face's vote: marked or not, its payload when marked, the confidence (0..1), and the
    frames voted on."""

    present: bool
    server_id: int | None
    identity: int | None
    confidence: float
    frames: int


def crc16(bits: np.ndarray, key: MarkKey) -> np.ndarray:
    """Keyed CRC-16/CCITT of a bit vector (0/1) -> 16 bits (0/1), initial value from the key."""
    register = key.seed("crc") & 0xFFFF
    for bit in bits.astype(np.int64):
        top = ((register >> 15) & 1) ^ int(bit)
        register = ((register << 1) & 0xFFFF) ^ (CRC_POLY if top else 0)
    return np.array([(register >> (15 - i)) & 1 for i in range(CHECK_BITS)], np.uint8)


def whitening(key: MarkKey, variant: int = 0) -> np.ndarray:
    """One of the VARIANTS keyed masks XORed onto the codeword (CODE_BITS of 0/1)."""
    return np.random.Generator(np.random.PCG64(key.seed(f"mask/{variant}"))).integers(
        0, 2, CODE_BITS).astype(np.uint8)


def to_bits(value: int, width: int) -> np.ndarray:
    """An unsigned integer -> width bits, most significant first."""
    if not 0 <= value < 2 ** width:
        raise ValueError(f"{value} does not fit in {width} bits")
    return np.array([(value >> (width - 1 - i)) & 1 for i in range(width)], np.uint8)


def from_bits(bits: np.ndarray) -> int:
    """Bits (most significant first) -> unsigned integer."""
    return int(sum(int(bit) << (len(bits) - 1 - i) for i, bit in enumerate(bits)))


def encode_payload(server_id: int, identity: int, key: MarkKey, variant: int = 0
                   ) -> np.ndarray:
    """The codeword (CODE_BITS of 0/1) for a server id and an identity index (one variant)."""
    data = np.concatenate([to_bits(server_id, SERVER_BITS), to_bits(identity, IDENTITY_BITS)])
    return np.concatenate([data, crc16(data, key)]) ^ whitening(key, variant)


def decode_plain(plain: np.ndarray, key: MarkKey) -> tuple[int, int] | None:
    """(server id, identity index) of an unmasked codeword, None when its check fails."""
    plain = np.asarray(plain, np.uint8)
    data, check = plain[:SERVER_BITS + IDENTITY_BITS], plain[SERVER_BITS + IDENTITY_BITS:]
    if not np.array_equal(crc16(data, key), check):
        return None
    return from_bits(data[:SERVER_BITS]), from_bits(data[SERVER_BITS:])


def decode_payload(code: np.ndarray, key: MarkKey) -> tuple[int, int] | None:
    """(server id, identity index) of a codeword under any variant, None when no variant's
    check holds (a random codeword passes with odds VARIANTS / 2**CHECK_BITS)."""
    for variant in range(VARIANTS):
        found = decode_plain(np.asarray(code, np.uint8) ^ whitening(key, variant), key)
        if found is not None:
            return found
    return None


def mask_signs(key: MarkKey) -> np.ndarray:
    """Every variant's mask as signs [VARIANTS,CODE_BITS]: -1 where the mask flips a bit."""
    return np.stack([1.0 - 2.0 * whitening(key, variant).astype(np.float32)
                     for variant in range(VARIANTS)])


def band_basis(size: int, band: tuple[float, float]) -> np.ndarray:
    """DCT-II basis images [M,S*S] of a size x size tile whose radius is in `band`."""
    low, high = band
    grid = np.arange(int(np.ceil(high)) + 1)
    pairs = [(u, v) for u in grid for v in grid if low <= np.hypot(u, v) <= high]
    t = (np.arange(size) + 0.5) / size
    return np.stack([np.outer(np.cos(np.pi * v * t), np.cos(np.pi * u * t)).reshape(-1)
                     for u, v in pairs])


def tile_patterns(key: MarkKey) -> np.ndarray:
    """Orthonormal patterns [CODE_BITS, T*T] float32, one per codeword bit, keyed: the band's
    basis images dealt out at random (disjoint sets, random signs), orthonormalised after the
    constant (a brightness change moves no projection)."""
    rng = np.random.Generator(np.random.PCG64(key.seed("patterns")))
    basis = band_basis(key.tile, key.band)
    if basis.shape[0] < CODE_BITS:
        raise ValueError(f"band {key.band} has {basis.shape[0]} frequencies, "
                         f"fewer than {CODE_BITS} bits")
    owner = rng.permutation(basis.shape[0]) % CODE_BITS
    signs = rng.choice([-1.0, 1.0], basis.shape[0])
    raw = np.stack([(signs[owner == bit, None] * basis[owner == bit]).sum(axis=0)
                    for bit in range(CODE_BITS)])
    q, _r = np.linalg.qr(np.concatenate([np.ones((1, key.tile * key.tile)), raw]).T)
    return q[:, 1:].T.astype(np.float32)


def halved_patterns(patterns: np.ndarray, tile: int) -> np.ndarray:
    """The patterns as a frame downscaled 2x by area averaging shows them: [BITS,(T/2)^2]."""
    half = tile // 2
    blocks = patterns.reshape(-1, half, 2, half, 2).mean(axis=(2, 4))
    return blocks.reshape(patterns.shape[0], -1).astype(np.float32)


def codeword_tile(server_id: int, identity: int, key: MarkKey) -> np.ndarray:
    """What the embedder adds to the luma [T,T] (levels) for one identity of one server: each
    bit's pattern at +-strength."""
    signs = encode_payload(server_id, identity, key).astype(np.float32) * 2.0 - 1.0
    return (key.strength * signs @ tile_patterns(key)).reshape(key.tile, key.tile)


def decode(soft_bits: Sequence[np.ndarray] | np.ndarray, key: MarkKey | None = None,
           max_frames: int = MAX_FRAMES, min_confidence: float = MIN_CONFIDENCE
           ) -> MarkReading:
    """One face's reading from its frames' soft bits [F,CODE_BITS] (the scan's MARK rows of
    one face track, oldest first; all-zero rows, empty slots, are skipped; the first
    max_frames are used).

    Starting from each variant as the one most frames used, each frame's variant is chosen
    against the running mean of the unmasked, clipped soft bits (VOTE_ROUNDS rounds); the first
    start whose signs pass the keyed CRC wins. Marked: the CRC holds and the confidence (mean
    |averaged soft bit| clipped to 1) is at least min_confidence.
    """
    key = key or MarkKey()
    stack = np.asarray(soft_bits, np.float32).reshape(-1, CODE_BITS)
    stack = stack[np.abs(stack).sum(axis=1) > 0][:max_frames]
    if stack.shape[0] == 0:
        return MarkReading(False, None, None, 0.0, 0)
    plain = np.clip(stack, -SOFT_CLIP, SOFT_CLIP)[:, None, :] * mask_signs(key)[None]
    frames = np.arange(stack.shape[0])
    best: tuple[np.ndarray, tuple[int, int] | None] | None = None
    for start in range(VARIANTS):
        mean = plain[:, start].mean(axis=0)
        for _ in range(VOTE_ROUNDS):
            mean = plain[frames, (plain @ mean).argmax(axis=1)].mean(axis=0)
        payload = decode_plain((mean > 0).astype(np.uint8), key)
        if best is None or (payload is not None and best[1] is None):
            best = (mean, payload)
    mean, payload = best
    confidence = float(np.clip(np.abs(mean), 0.0, 1.0).mean())
    if payload is None or confidence < min_confidence:
        return MarkReading(False, None, None, confidence, stack.shape[0])
    return MarkReading(True, payload[0], payload[1], confidence, stack.shape[0])
