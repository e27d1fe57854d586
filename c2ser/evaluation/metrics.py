"""Old home of the labels, kept for one release: ``tests/tasks/test_recipe.py`` (owned by the
recipe work) still imports ``EMOTIONS`` from here. Labels, metrics and the confusion figure now
live in :mod:`c2ser.core.labels`, :mod:`c2ser.core.metrics` and :mod:`c2ser.core.figures`.
"""

from c2ser.core.labels import EMOTIONS

__all__ = ["EMOTIONS"]
