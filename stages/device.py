"""Pick the torch device named by compute.device."""

import torch

from stages.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; an explicit name must be available here."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UserError(f"compute.device = {name!r} is not available on this machine; use auto or cpu")
    return torch.device(name)
