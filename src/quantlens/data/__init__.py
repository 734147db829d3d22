"""Data: every kind of source (files, built-in samples, arrays, iterables, tf.data) read as
batches of arrays in a model's input order.

``dataset`` holds :class:`Dataset`, :func:`load_dataset` and the checks against a model's
inputs; ``sources`` one reader per kind of source behind the :class:`~quantlens.data.sources.Source`
protocol; ``builtin`` the built-in samples.
"""

from quantlens.data.builtin import BUILTINS, diabetes, digits
from quantlens.data.dataset import Batch, Dataset, load_dataset
from quantlens.data.sources import check_batch_memory

__all__ = [
    "BUILTINS",
    "Batch",
    "Dataset",
    "check_batch_memory",
    "diabetes",
    "digits",
    "load_dataset",
]
