"""Search spaces: nb201, darts_cell, mbnet_chain, nb101, anytime. Each lives in one module and registers itself."""
from .base import SPACES, Arch, SearchSpace, get_space, register_space

__all__ = ["SPACES", "Arch", "SearchSpace", "get_space", "register_space"]
