"""Find the function a space's `model.builder` names ("package.module:function"). Light itself: importing the
named module imports whatever it does (torch, for a model), which only a model of one's own asks for."""

from __future__ import annotations

import importlib
from collections.abc import Callable


class BuilderError(ValueError):
    """A builder that cannot be loaded, or whose module breaks the contract; its message names it."""


def load(target: str) -> Callable:
    """The function "package.module:function" names; BuilderError naming what is missing."""
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or the module's own error while it imports (a SyntaxError)
        raise BuilderError(
            f"model.builder {target!r}: module {module_name!r} does not import ({type(e).__name__}: {e})"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise BuilderError(f"model.builder {target!r}: {module_name} has no function {function_name!r}")
    return function
