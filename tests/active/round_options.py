"""Round options that keep the active-loop tests fast: a tiny cb3d, few epochs, CPU, no bars.

Test modules extend :data:`TINY_ROUND` with what they pin (epochs, budget, gallery, strategy).
"""

from __future__ import annotations

from typing import Any

#: the model and the machinery of a round, shared by tests/active
TINY_ROUND: dict[str, Any] = {
    "arch": "cb3d",
    "arch_kwargs": {"channels": (4, 8)},
    "train_batch_size": 8,
    "batch_size": 16,
    "device": "cpu",
    "progress": False,
}
