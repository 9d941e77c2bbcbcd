"""Site models built at enrollment: what the site's own normal footage looks like (patch memory)."""

from stream_monitor.sitemodel.patch_memory import (DEFAULT_LAYERS, PatchFeatureExtractor, PatchMemory, frame_score,
                                                   valid_region)

__all__ = ["DEFAULT_LAYERS", "PatchFeatureExtractor", "PatchMemory", "frame_score", "valid_region"]
