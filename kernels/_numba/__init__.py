"""Numba (CPU) kernels. Importing this package first drops on-disk kernel caches that are stale.

Numba keys a cached kernel by its own source file's time stamp, but the cached machine code
also holds every compiled function it calls and every global it read (``cut.py``'s selection
inside ``propose.py``'s kernel, ``propose.py``'s ``exp`` inside ``stats.py``'s kernels,
``SAMPLE_TILE`` and the Philox constants). Edit one of those files alone (a ``git pull``
into an editable install) and the other files' caches would still load, with the old code
inside. So this package's caches are keyed here, as a set, by a digest of every source they
depend on, and deleted when it changes: in its ``__pycache__``, or in the folder Numba uses
for this package under ``NUMBA_CACHE_DIR`` when that is set.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# Every file whose code or constants end up in a compiled kernel of this package.
_SOURCES = (*sorted(_HERE.glob("*.py")), _HERE.parent / "propose.py", _HERE.parent / "_philox.py")
_STAMP = "remask-kernel-sources.txt"


def _cache_dir() -> Path:
    """Where Numba caches this package's kernels: its folder for this package under
    ``NUMBA_CACHE_DIR`` (``numba.config.CACHE_DIR``) when that is set, else ``__pycache__``."""
    try:
        from numba.core import config
        from numba.core.caching import UserProvidedCacheLocator
    except ImportError:  # no Numba: no caches (the kernels' own import reports it)
        return _HERE / "__pycache__"
    if not config.CACHE_DIR:
        return _HERE / "__pycache__"

    # Numba names the folder after the kernels' source folder as imported (symlinks not
    # resolved), and every kernel of this package is defined in this folder.
    here = os.path.dirname(os.path.abspath(__file__))
    sub = UserProvidedCacheLocator.get_suitable_cache_subpath(os.path.join(here, "propose.py"))
    return Path(config.CACHE_DIR) / sub


def _drop_stale_caches(cache: Path | None = None, sources=_SOURCES) -> bool:
    """Delete the Numba cache files in ``cache`` (default :func:`_cache_dir`) unless they were
    written from the current ``sources``; returns whether files were deleted. A read-only
    install (Numba then caches in its user-wide directory, which this does not touch) is left
    alone: its sources change only by a reinstall, which changes every file's time stamp."""
    if cache is None:
        cache = _cache_dir()
    digest = hashlib.sha256()
    try:
        for path in sources:
            digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes())
    except OSError:
        return False
    stamp = digest.hexdigest()
    try:
        if (cache / _STAMP).read_text() == stamp:
            return False
    except OSError:
        pass
    try:
        stale = [*cache.glob("*.nbi"), *cache.glob("*.nbc")]
        for path in stale:
            path.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        (cache / _STAMP).write_text(stamp)
    except OSError:
        return False
    return bool(stale)


_drop_stale_caches()
