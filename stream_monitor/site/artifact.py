"""The site model travels inside the detector artifact: one file, checksummed, no pickle.

`stream-monitor enroll` writes the (threshold-enrolled) NERO detector and, beside its arrays, the site
model's arrays under the `site__` prefix and its options under the metadata key `site_model`.
NeroDetector.load reads only its own arrays, so an enrolled artifact is still a NERO detector for every
existing tool; `load_site_model` finds the site model in it (None in a plain detector).
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import artifact
from ..errors import ArtifactError, InputError
from ..nero import NeroDetector
from .site_model import SiteModel

__all__ = ["load_site_model", "save_with_site_model"]

_PREFIX = "site__"
_META_KEY = "site_model"


def save_with_site_model(path: str | os.PathLike, detector: NeroDetector, site: SiteModel) -> Path:
    """Write `detector` and `site` to one artifact at `path` (atomically, checksums over every array)."""
    path = Path(path)
    detector.save(path)
    arrays, meta = artifact.read_artifact(path)
    site_arrays, site_meta = site.to_arrays()
    arrays.update({_PREFIX + name: value for name, value in site_arrays.items()})
    meta[_META_KEY] = site_meta
    meta.pop("array_sha256", None)
    return artifact.write_artifact(path, arrays, meta)


def load_site_model(path: str | os.PathLike) -> SiteModel | None:
    """The site model stored in a detector artifact, or None when it holds none (checksums verified)."""
    arrays, meta = artifact.read_artifact(path)
    if _META_KEY not in meta:
        return None
    site_arrays = {name[len(_PREFIX):]: value for name, value in arrays.items() if name.startswith(_PREFIX)}
    try:
        return SiteModel.from_arrays(site_arrays, meta[_META_KEY])
    except InputError as exc:
        raise ArtifactError(f"{path}: its site model is unreadable ({exc}); re-run `stream-monitor enroll`") from exc
