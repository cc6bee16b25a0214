"""Resource constraints on the final network (max parameters / FLOPs), measured once per arch and cached."""
from __future__ import annotations

from typing import Optional

from oneshot_bench.config import NetConfig
from oneshot_bench.measure import count_flops, count_params
from search_spaces.base import Arch, SearchSpace


class ResourceConstraint:
    def __init__(self, space: SearchSpace, net: NetConfig, resolution: int, *, max_params: Optional[float],
                 max_flops: Optional[float]):
        self.space, self.net, self.resolution = space, net, resolution
        self.max_params, self.max_flops = max_params, max_flops
        self._cache: dict[Arch, tuple[int, int]] = {}

    @property
    def active(self) -> bool:
        return self.max_params is not None or self.max_flops is not None

    def measure(self, arch: Arch) -> tuple[int, int]:
        if arch not in self._cache:
            net = self.space.build_standalone(arch, self.net)
            flops = count_flops(net, self.net.in_channels, self.resolution) if self.max_flops is not None else 0
            self._cache[arch] = (count_params(net), flops)
        return self._cache[arch]

    def __call__(self, arch: Arch) -> bool:
        if not self.active:
            return True
        params, flops = self.measure(arch)
        return ((self.max_params is None or params <= self.max_params)
                and (self.max_flops is None or flops <= self.max_flops))
