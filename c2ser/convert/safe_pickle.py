"""Load official ``.pt`` checkpoints without executing pickled code.

``torch.load`` is given a restricted pickle module: tensors, storages, dtypes and ordered dicts
are rebuilt for real (an explicit allow-list); every other global (fairseq dataclasses, omegaconf
containers, argparse namespaces, enums) becomes an inert :class:`Opaque` record of its name,
arguments and state. Nothing from the file is imported or called. :func:`to_plain` then turns
omegaconf containers back into plain dicts/lists so that converters can read ``cfg``.

Loading uses ``mmap=True`` for zip-format files, so a 16 GB checkpoint is not copied into RAM.
"""

from __future__ import annotations

import os
import pickle
import types
import zipfile
from collections import OrderedDict
from typing import Any

import torch

from c2ser.core.errors import BadInputError

_ALLOWED_PREFIXES = ("torch._utils._rebuild_", "torch._tensor._rebuild_")
_ALLOWED = {
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch.storage", "UntypedStorage"),
    ("torch.storage", "TypedStorage"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
}


class Opaque:
    """Stand-in for a non-allow-listed global: records what the pickle asked for, runs nothing."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Opaque({self.qualname})"


def _opaque_class(module: str, name: str) -> type:
    cls = types.new_class(name, (Opaque,))
    cls.qualname = f"{module}.{name}"
    cls.__new__ = lambda c, *a, **k: object.__new__(c)  # NEWOBJ passes constructor args
    return cls


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        is_storage = module == "torch" and name.endswith("Storage")
        is_dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        if (
            (module, name) in _ALLOWED
            or full.startswith(_ALLOWED_PREFIXES)
            or is_storage
            or is_dtype
        ):
            return super().find_class(module, name)
        return _opaque_class(module, name)


# torch.load(pickle_module=...) needs an object with ``Unpickler`` and ``load``.
restricted_pickle = types.SimpleNamespace(
    Unpickler=RestrictedUnpickler,
    load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
    __name__="c2ser_restricted_pickle",
)


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Load an official checkpoint safely; tensors are memory-mapped where the format allows.

    A truncated download is named as such: memory-mapping a zip without its central directory
    fails with a bare ``OSError: [Errno 22] Invalid argument``.
    """
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip and not zipfile.is_zipfile(path):
        raise BadInputError(
            f"{path}: truncated or corrupt zip archive (no central directory); copy it again"
        )
    kwargs: dict[str, Any] = {
        "map_location": "cpu",
        "weights_only": False,
        "pickle_module": restricted_pickle,
    }
    try:
        return torch.load(os.fspath(path), mmap=True, **kwargs)
    except RuntimeError as e:  # legacy (non-zip) files cannot be memory-mapped
        if "mmap" not in str(e):
            raise
        return torch.load(os.fspath(path), **kwargs)


def to_plain(obj: Any) -> Any:
    """Recursively turn Opaque omegaconf containers/nodes into plain Python values."""
    if isinstance(obj, Opaque):
        state = obj.state if obj.state is not None else {}
        if isinstance(state, dict) and "_content" in state:
            return to_plain(state["_content"])
        if isinstance(state, dict) and "_val" in state:
            return to_plain(state["_val"])
        if obj.args and not state:  # enums and simple value objects: keep the value
            return to_plain(obj.args[0]) if len(obj.args) == 1 else [to_plain(a) for a in obj.args]
        return to_plain(state) if isinstance(state, dict) else state
    if isinstance(obj, dict | OrderedDict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_plain(v) for v in obj)
    return obj
