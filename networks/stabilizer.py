"""The stabilizer graph: per-stream state that keeps the swap still, every step inside a graph.

Between the landmarker and the swapper of the streaming ensemble. For each stream (a Triton
sequence) and face slot it keeps the last boxes, the filtered landmarks and their speed, and how
many frames a face has been missing. Each frame:
- faces are associated with the previous frame's slots by box overlap (greedy, best IoU first),
  so a face keeps its slot when the detector's order changes;
- the landmarks go through a One Euro filter (Casiez et al. 2012), one cutoff per face from its
  speed relative to its size: still faces are smoothed hard, moving ones follow with little lag;
  a jump of more than half a face resets the filter;
- a face that was there and is missed for up to HOLD frames is held (its last landmarks, still
  present), so a single missed detection does not let the original face pop back.

State tensors go in and come out of the graph (STATE_* / NEXT_*); the serving side stores them
per sequence (server/ort_model.py), as Triton's implicit state does for TensorRT. RESET is 1 on
a sequence's first frame. Fixed shapes: K is an export parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from swaptron.networks.face_template import RIGID_POINTS
from swaptron.networks.geometry import box_iou


@dataclass(frozen=True)
class StabilizerOptions:
    """The filter's settings, in frames and face widths."""

    min_cutoff: float = 0.02  # cycles per frame for a still face (strong smoothing)
    beta: float = 4.0  # cutoff gain per face width per frame of speed
    derivative_cutoff: float = 0.15  # cycles per frame for the speed estimate
    jump: float = 0.5  # a move of more than this many face widths in a frame resets the filter
    hold: int = 3  # frames a missed face is held
    match_iou: float = 0.2  # least box overlap to call two detections the same face
    presence_threshold: float = 0.5


def smoothing(cutoff: torch.Tensor) -> torch.Tensor:
    """The exponential smoothing factor of a cutoff (cycles per frame), one frame apart."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau)


class Stabilizer(nn.Module):
    """(FACES, LANDMARKS, PRESENCE, state, RESET) -> FACES, LANDMARKS, PRESENCE in steady
    slots, then the next state."""

    def __init__(self, max_faces: int, options: StabilizerOptions | None = None) -> None:
        super().__init__()
        self.slots = max_faces
        self.options = options or StabilizerOptions()

    def associate(self, previous: torch.Tensor, previous_present: torch.Tensor,
                  current: torch.Tensor, current_present: torch.Tensor) -> torch.Tensor:
        """For each previous slot, the current slot holding the same face: a one-hot matrix
        [B,K,K] (rows previous, columns current). Greedy on IoU, best pair first; current
        faces left over take the free previous slots in order."""
        slots = self.slots
        both = torch.cat([previous, current], dim=1)  # [B,2K,4]
        iou = box_iou(both)[:, :slots, slots:]  # [B,K,K]
        valid = previous_present.unsqueeze(2) * current_present.unsqueeze(1)
        score = torch.where(valid > 0, iou, torch.full_like(iou, -1.0))
        assignment = torch.zeros_like(iou)
        for _ in range(slots):
            flat = score.flatten(1)
            best, position = flat.max(dim=1)
            row, column = position // slots, position % slots
            take = (best >= self.options.match_iou).to(iou.dtype)
            pick = (nn.functional.one_hot(row, slots).unsqueeze(2)
                    * nn.functional.one_hot(column, slots).unsqueeze(1)).to(iou.dtype)
            assignment = assignment + pick * take.reshape(-1, 1, 1)
            used_row = pick.amax(dim=2, keepdim=True) * take.reshape(-1, 1, 1)
            used_column = pick.amax(dim=1, keepdim=True) * take.reshape(-1, 1, 1)
            blocked = torch.maximum(used_row.expand_as(score), used_column.expand_as(score))
            score = torch.where(blocked > 0, torch.full_like(score, -1.0), score)
        # current faces not matched go, in order, to previous slots not matched
        free_rows = 1.0 - assignment.amax(dim=2)  # [B,K]
        left = (1.0 - assignment.amax(dim=1)) * current_present  # [B,K]
        row_rank = torch.cumsum(free_rows, dim=1) * free_rows  # 1.. for free rows, 0 otherwise
        column_rank = torch.cumsum(left, dim=1) * left
        pair = ((row_rank.unsqueeze(2) == column_rank.unsqueeze(1))
                & (row_rank.unsqueeze(2) > 0)).to(iou.dtype)
        return assignment + pair

    def forward(self, faces: torch.Tensor, landmarks: torch.Tensor, presence: torch.Tensor,
                state_boxes: torch.Tensor, state_landmarks: torch.Tensor,
                state_speed: torch.Tensor, state_missed: torch.Tensor, reset: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        """faces [B,K,5], landmarks [B,K,468,2], presence [B,K]; state_boxes [B,K,5] (box and
        presence), state_landmarks [B,K,468,2], state_speed [B,K], state_missed [B,K]; reset
        [B,1] -> FACES (a held face keeps its last box, score 1), LANDMARKS, PRESENCE, then
        the four next states."""
        options = self.options
        fresh = (reset > 0.5).reshape(-1, 1)  # [B,1]
        previous_present = state_boxes[..., 4] * (~fresh).to(state_boxes.dtype)
        current_present = (presence > options.presence_threshold).to(presence.dtype)
        match = self.associate(state_boxes[..., :4], previous_present, faces[..., :4],
                               current_present)  # [B,K(prev),K(cur)]
        # the current faces, put in the previous slots' order (MatMul: TensorRT-plain)
        ordered_landmarks = torch.matmul(match, landmarks.flatten(2)).reshape(landmarks.shape)
        ordered_faces = torch.matmul(match, faces)
        ordered_presence = torch.matmul(match, presence.unsqueeze(-1)).squeeze(-1)
        seen = match.amax(dim=2)  # [B,K]: the slot has a face this frame
        width = (ordered_faces[..., 2] - ordered_faces[..., 0]).clamp_min(1.0)  # [B,K]
        # One Euro filter, one cutoff per face
        rigid = list(RIGID_POINTS)
        motion = ordered_landmarks - state_landmarks  # [B,K,468,2]
        step = motion[:, :, rigid].norm(dim=-1).mean(dim=-1) / width  # face widths per frame
        alpha_speed = smoothing(torch.tensor(options.derivative_cutoff))
        speed = alpha_speed * step + (1.0 - alpha_speed) * state_speed
        alpha = smoothing(options.min_cutoff + options.beta * speed).reshape(*speed.shape, 1, 1)
        filtered = state_landmarks + alpha * motion
        restart = ((previous_present < 0.5) | (step > options.jump)).reshape(*step.shape, 1, 1)
        filtered = torch.where(restart, ordered_landmarks, filtered)
        speed = torch.where(restart[..., 0, 0], torch.zeros_like(speed), speed)
        # hold a face missed for up to `hold` frames
        missed = (state_missed + 1.0) * (1.0 - seen) * previous_present
        held = (seen < 0.5) & (previous_present > 0.5) & (missed <= options.hold)
        out_landmarks = torch.where(seen.reshape(*seen.shape, 1, 1) > 0.5, filtered,
                                    torch.where(held.reshape(*held.shape, 1, 1),
                                                state_landmarks, torch.zeros_like(filtered)))
        out_presence = torch.where(seen > 0.5, ordered_presence,
                                   held.to(ordered_presence.dtype))
        kept = (seen > 0.5) | held
        held_boxes = state_boxes * held.unsqueeze(-1).to(state_boxes.dtype)
        out_faces = torch.where(seen.unsqueeze(-1) > 0.5, ordered_faces, held_boxes)
        next_boxes = torch.where(seen.unsqueeze(-1) > 0.5,
                                 torch.cat([ordered_faces[..., :4], seen.unsqueeze(-1)], dim=-1),
                                 held_boxes)
        next_landmarks = torch.where(kept.reshape(*kept.shape, 1, 1), out_landmarks,
                                     torch.zeros_like(out_landmarks))
        next_missed = torch.where(held, missed, torch.zeros_like(missed))
        return (out_faces, out_landmarks, out_presence, next_boxes, next_landmarks,
                speed * kept.to(speed.dtype), next_missed)


def initial_state(batch: int, max_faces: int, landmarks: int) -> list[torch.Tensor]:
    """The state of a sequence before its first frame, in forward's order (all zeros)."""
    return [torch.zeros(batch, max_faces, 5), torch.zeros(batch, max_faces, landmarks, 2),
            torch.zeros(batch, max_faces), torch.zeros(batch, max_faces)]
