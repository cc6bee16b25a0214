"""NAS method adapters. Each lives in one module, subclasses methods.base.Method and registers itself."""
from .base import METHODS, Method, SearchContext, get_method, register_method

__all__ = ["METHODS", "Method", "SearchContext", "get_method", "register_method"]
