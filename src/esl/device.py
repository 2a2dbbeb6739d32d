"""Device choice: CUDA when present, the CPU otherwise (same results up to float tolerance)."""

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
