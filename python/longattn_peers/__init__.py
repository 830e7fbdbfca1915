"""longattn's peer bridge: runs PyTorch SDPA, FlexAttention and any installed FlashAttention or
FlashInfer on longattn's canonical masks, under longattn's timing protocol.

The package imports without torch: the request/record protocol (protocol.py), the canonical masks
(masks.py) and every peer's mask format (formats.py) are numpy only, so they are tested on machines
without a GPU. Only the peers themselves (peers/) and the measurement (measure.py) need torch.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
