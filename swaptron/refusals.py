"""The words a swap request's unknown identity is refused in, written once: the selector
(server/selector_model.py) and the web page's session say the same (swaptron.specs re-exports
identity_refusal as part of the contract).

Self-contained on purpose (the standard library only): `swaptron export` copies this file as
`refusals.py` beside the selector's `model.py` (the Python backend puts the model's folder on
sys.path), for every target: NVIDIA's container has no swaptron package.
"""

from __future__ import annotations

from collections.abc import Sequence

SHOWN_CHARACTERS = 40  # of a bad name, in an error


def shown(text: str) -> str:
    """A name as an error quotes it: shortened, quoted."""
    return repr(text[:SHOWN_CHARACTERS] + ("..." if len(text) > SHOWN_CHARACTERS else ""))


def identity_refusal(requested: str, served: Sequence[str], default: str | None,
                     name: str = "identity") -> str | None:
    """Why a request naming identity `requested` is refused, or None when it is `served`:
    "unknown <name> 'zed'; this server swaps into a, b (default b)" (no default part when
    `default` is None). `name` is the word for what was asked: the selector passes its input's
    name (IDENTITY)."""
    if requested in served:
        return None
    fallback = f" (default {default})" if default is not None else ""
    return (f"unknown {name} {shown(requested)}; this server swaps into {', '.join(served)}"
            f"{fallback}")
