"""How long-running library steps report progress without printing.

Library code receives a ``ProgressFactory``; the CLI supplies one that draws tqdm bars, a
notebook may supply its own, and the default does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class ProgressFactory(Protocol):
    """Open a progress reporter for a step of ``total`` units; the context yields ``advance(n)``."""

    def __call__(self, *, description: str, total: int) -> AbstractContextManager[Advance]: ...


@contextmanager
def _silent(*, description: str, total: int) -> Iterator[Advance]:
    del description, total
    yield lambda n: None


def no_progress(*, description: str, total: int) -> AbstractContextManager[Advance]:
    """A ProgressFactory that reports nothing (the library default)."""
    return _silent(description=description, total=total)
