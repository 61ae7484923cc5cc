"""hub: move wmsim bundles to and from the Hugging Face Hub. Model-agnostic: files only, no model code."""

from .download import HubError, NotCachedError, UnsafeRepoError, download_bundle, is_offline

__all__ = ["HubError", "NotCachedError", "UnsafeRepoError", "download_bundle", "is_offline"]
