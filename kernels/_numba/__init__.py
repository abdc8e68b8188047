"""Numba (CPU) kernels. Importing this package first drops on-disk kernel caches that are stale.

Numba keys a cached kernel by its own source file's time stamp, but the cached machine code
also holds every compiled function it calls and every global it read (``cut.py``'s selection
inside ``propose.py``'s kernel, ``propose.py``'s ``exp`` inside ``stats.py``'s kernels,
``SAMPLE_TILE`` and the Philox constants). Edit one of those files alone (a ``git pull``
into an editable install) and the other files' caches would still load, with the old code
inside. So the caches in this package's ``__pycache__`` are keyed here, as a set, by a
digest of every source they depend on, and deleted when it changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# Every file whose code or constants end up in a compiled kernel of this package.
_SOURCES = (*sorted(_HERE.glob("*.py")), _HERE.parent / "propose.py", _HERE.parent / "_philox.py")
_STAMP = "remask-kernel-sources.txt"


def _drop_stale_caches(cache: Path = _HERE / "__pycache__", sources=_SOURCES) -> bool:
    """Delete the Numba cache files in ``cache`` unless they were written from the current
    ``sources``; returns whether files were deleted. A read-only install (Numba then caches
    in its user-wide directory, which this does not touch) is left alone."""
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
        cache.mkdir(exist_ok=True)
        (cache / _STAMP).write_text(stamp)
    except OSError:
        return False
    return bool(stale)


_drop_stale_caches()
