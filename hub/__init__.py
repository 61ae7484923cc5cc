"""hub: move wmsim bundles to and from the Hugging Face Hub through ``huggingface_hub``.

Model-agnostic: it moves files and never imports model code (``hub`` <- ``wmsim`` <- ``agents``).
"""

from .cache import CachedModel, cached_models
from .download import (
    ALLOWED_PATTERNS,
    HubError,
    NotCachedError,
    UnsafeRepoError,
    download_bundle,
    is_offline,
    unsafe_files,
)
from .upload import UploadResult, bundle_files, upload_bundle

__all__ = [
    "ALLOWED_PATTERNS",
    "CachedModel",
    "HubError",
    "NotCachedError",
    "UnsafeRepoError",
    "UploadResult",
    "bundle_files",
    "cached_models",
    "download_bundle",
    "is_offline",
    "unsafe_files",
    "upload_bundle",
]
