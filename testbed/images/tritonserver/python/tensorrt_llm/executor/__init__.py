from .utils import RequestError

__all__ = ["RequestError"]
