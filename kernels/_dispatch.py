"""Backend resolution for the kernel ops (docs/design.md §4).

Order: explicit ``backend=`` argument, then :func:`use_backend`, then the ``REMASK_BACKEND``
environment variable, then the best available backend for the tensor's device
(cpu: numba > torch; cuda: triton > torch). An explicitly requested backend that cannot run
raises; the automatic choice falls back silently (one debug log line).

Numba and Triton are imported lazily, on the first resolution that asks for them, so
``import remask.kernels`` needs only torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["BACKENDS", "backends", "get_impl", "resolve_backend", "use_backend"]

_log = logging.getLogger("remask.kernels")

BACKENDS = ("torch", "numba", "triton")
# Which device types each backend can run on. Triton runs CPU tensors only in its
# interpreter (TRITON_INTERPRET=1, used by the tests); it is never chosen automatically there.
_DEVICES = {"torch": ("cpu", "cuda"), "numba": ("cpu",), "triton": ("cuda",)}


def _devices(name: str) -> tuple[str, ...]:
    if name == "triton" and os.environ.get("TRITON_INTERPRET", "0") == "1":
        return ("cuda", "cpu")
    return _DEVICES[name]


# Priority of the automatic choice per device type.
_AUTO = {"cpu": ("numba", "torch"), "cuda": ("triton", "torch")}
# Module holding each backend's implementations (imported on first use; its
# unavailable_reason() decides whether the backend runs here).
_MODULES = {
    "torch": "remask.kernels.propose",
    "numba": "remask.kernels._numba.propose",
    "triton": "remask.kernels._triton.propose",
}
# Further modules of each backend, searched for ops the main module does not define.
_EXTRA_MODULES = {
    "torch": ("remask.kernels.stats",),
    "numba": ("remask.kernels._numba.stats",),
    "triton": ("remask.kernels._triton.stats",),
}

_context: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "remask_kernel_backend", default=None
)


class _Loaded(dict):
    """name -> imported module, or the message explaining why it is unavailable; every change
    bumps ``generation``, which invalidates :func:`get_impl`'s memo."""

    generation = 0

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        type(self).generation += 1

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        type(self).generation += 1


_loaded: dict[str, Any] = _Loaded()


def _check_name(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r} ({where}); expected one of {BACKENDS}")
    return name


def _load(name: str) -> Any:
    """Import a backend module once; return it, or the reason (str) why it cannot be used."""
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
            reason = module.unavailable_reason() if hasattr(module, "unavailable_reason") else None
            _loaded[name] = reason if reason else module
        except ImportError as exc:  # the optional dependency is missing or broken
            _loaded[name] = f"{name} could not be imported: {exc}"
    return _loaded[name]


def _usable(name: str, device_type: str) -> str | None:
    """None if ``name`` can run on ``device_type``, else the reason it cannot."""
    if device_type not in _devices(name):
        return f"backend {name!r} does not run on {device_type!r} tensors"
    loaded = _load(name)
    return loaded if isinstance(loaded, str) else None


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Select the kernel backend inside a ``with`` block (``None`` restores automatic choice).

    Parameters
    ----------
    name : {"torch", "numba", "triton"} or None

    Examples
    --------
    >>> import remask.kernels as K
    >>> with K.use_backend("torch"):
    ...     K.resolve_backend(device="cpu")
    'torch'
    """
    if name is not None:
        _check_name(name, "use_backend")
    token = _context.set(name)
    try:
        yield
    finally:
        _context.reset(token)


def resolve_backend(backend: str | None = None, *, device: torch.device | str = "cpu") -> str:
    """Return the backend name that an op called with ``backend`` on ``device`` will use.

    Raises
    ------
    ValueError
        If the requested name is unknown.
    RuntimeError
        If a backend was requested explicitly (argument, context manager or environment
        variable) and cannot run on ``device`` here.
    """
    # A torch.device already names its type: no new device object per call (this runs once
    # per kernel call, at every sampler step).
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    requested, where = backend, "backend= argument"
    if requested is None:
        requested, where = _context.get(), "use_backend()"
    if requested is None:
        env = os.environ.get("REMASK_BACKEND", "").strip()
        requested, where = (env or None), "REMASK_BACKEND"
    if requested is not None:
        _check_name(requested, where)
        reason = _usable(requested, device_type)
        if reason is not None:
            raise RuntimeError(
                f"kernel backend {requested!r} requested by {where} is unavailable: {reason}"
            )
        return requested
    for name in _AUTO.get(device_type, ("torch",)):
        reason = _usable(name, device_type)
        if reason is None:
            return name
        _log.debug("kernel backend %s skipped on %s: %s", name, device_type, reason)
    raise RuntimeError(f"no kernel backend runs on device type {device_type!r}")


# (op, requested backend, REMASK_BACKEND, device type, _loaded.generation) -> (name, impl):
# every kernel call of every sampler step resolves its backend; what decides the answer is
# read at each call (the argument, the context, the environment, the loaded modules), the
# resolution and the attribute search run once per distinct answer.
_memo: dict[tuple, tuple[str, Callable[..., Any]]] = {}


def get_impl(op: str, backend: str | None, device: torch.device) -> tuple[str, Callable[..., Any]]:
    """Resolve the backend and return ``(name, implementation of op)``."""
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    requested = backend if backend is not None else _context.get()
    env = os.environ.get("REMASK_BACKEND", "") if requested is None else ""
    key = (op, requested, env, device_type, _Loaded.generation)
    found = _memo.get(key)
    if found is None:
        name = resolve_backend(backend, device=device)
        found = (name, _find_impl(name, op))
        # Triton on CPU also depends on TRITON_INTERPRET, which the key does not hold.
        if not (name == "triton" and device_type == "cpu") and len(_memo) < 256:
            _memo[key] = found
    return found


def _find_impl(name: str, op: str) -> Callable[..., Any]:
    """The implementation of ``op`` in backend ``name``'s modules (already usable)."""
    module = _load(name)
    if hasattr(module, op):
        return getattr(module, op)
    for extra in _EXTRA_MODULES[name]:
        module = importlib.import_module(extra)
        if hasattr(module, op):
            return getattr(module, op)
    raise AttributeError(f"kernel backend {name!r} has no op {op!r}")


def backends(device: torch.device | str | None = None) -> list[str]:
    """Names of the backends that can run here (on ``device`` if given), in priority order.

    Calling this imports numba/triton if they are installed (to check that they work).
    """
    if device is None:
        types = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    else:
        types = [torch.device(device).type]
    found: list[str] = []
    for device_type in types:
        for name in _AUTO.get(device_type, ("torch",)):
            if name not in found and _usable(name, device_type) is None:
                found.append(name)
    return found
