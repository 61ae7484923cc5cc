"""The Hugging Face way to load and share a bundle: ``from_pretrained``, ``save_pretrained`` and
``push_to_hub``, with the signatures of ``huggingface_hub``'s ``ModelHubMixin``.

They are thin: ``from_pretrained`` resolves a name, repo id or directory as ``gym.make`` does
(:func:`wmsim.registry.resolve_model_dir`: a local directory, a registered name, then for a pretrained
name or repo id the Hub cache, the Hub and the copy shipped with wmsim) and loads it with the strict
safetensors + JSON loader (:func:`wmsim.bundle.load_bundle`); repos holding pickle files are refused
before anything is downloaded. ``save_pretrained`` writes a bundle folder (:func:`wmsim.bundle.save_bundle`
and the model card); ``push_to_hub`` saves to a temporary folder and uploads it in one commit with the
same checks as ``wmsim push`` (:func:`hub.upload_bundle`).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .bundle import Bundle


class BundleHubMixin:
    """``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` for :class:`~wmsim.Bundle`."""

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: str = "cpu",
    ) -> Bundle:
        """Load a bundle from a pretrained name (``"CartPole"``), a Hub repo id (``"owner/name"``,
        optionally ``"owner/name@revision"``) or a local bundle directory.

        Args:
            revision: a branch, tag or commit of the Hub repo (default: the pinned revision of a
                pretrained name, else main).
            cache_dir, force_download, token, local_files_only: ``huggingface_hub``'s meanings.
            device: where the loaded model lives.

        Raises:
            hub.HubError: the repo cannot be had (with what to do); hub.UnsafeRepoError for a repo that
                holds pickle files. wmsim.BundleError: the files are not a valid bundle.
        """
        from .bundle import load_bundle
        from .registry import resolve_model_dir

        path = resolve_model_dir(
            pretrained_model_name_or_path,
            revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        return load_bundle(path, device=device)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        weights_dtype: str = "float32",
        card: bool = True,
        **push_to_hub_kwargs: Any,
    ) -> Path:
        """Write the bundle into ``save_directory`` (created if needed): ``config.json``, the
        safetensors files and, with ``card``, the ``README.md`` model card (with ``repo_id`` in its usage
        snippet). The measured figures of the bundle's own folder (``openloop.json``, ``transfer.json``,
        the GIF and plot) come along. ONNX graphs do not: run ``wmsim export-onnx`` on the new folder.
        ``push_to_hub=True`` then uploads it to ``repo_id`` (keyword arguments of :meth:`push_to_hub`).
        Returns the folder."""
        from .bundle import save_bundle
        from .card import MEDIA_FILES, OPENLOOP_FILE, TRANSFER_FILE, write_card
        from .fileio import atomic_write

        bundle = cast("Bundle", self)
        target = Path(save_directory)
        policy = (
            (bundle.policy_tensors, bundle.policy_config)
            if bundle.policy_tensors is not None and bundle.policy_config is not None
            else None
        )
        save_bundle(
            target,
            bundle.model,
            bundle.env_spec,
            bundle.spaces,
            bundle.start_states,
            bundle.info,
            policy,
            weights_dtype=weights_dtype,
            card=False,
            tasks=bundle.tasks,
        )
        source = Path(bundle.path) if bundle.path is not None else None
        if source is not None and source.resolve() != target.resolve():
            for name in (OPENLOOP_FILE, TRANSFER_FILE, *MEDIA_FILES):
                if (source / name).is_file():
                    atomic_write(target / name, functools.partial(shutil.copy2, source / name))
        if card:
            write_card(target, repo_id=repo_id)
        if push_to_hub:
            if repo_id is None:
                raise ValueError("save_pretrained(..., push_to_hub=True) needs repo_id='owner/name'")
            _upload(target, repo_id, **push_to_hub_kwargs)
        return target

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        branch: str | None = None,
        create_pr: bool = False,
        tag: str | None = None,
    ) -> str:
        """Upload the bundle to the Hub model repo ``repo_id`` (created if needed; ``private`` applies to
        a new repo) in one commit on ``branch`` (default main), or as a pull request with ``create_pr``;
        ``tag`` names the commit (a revision users can pin). Only bundle files are sent (safetensors,
        JSON, the card and its figures). Returns the commit's URL."""
        with tempfile.TemporaryDirectory(prefix="wmsim-push-") as scratch:
            folder = self.save_pretrained(Path(scratch) / "bundle", repo_id=repo_id)
            return _upload(
                folder,
                repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                branch=branch,
                create_pr=create_pr,
                tag=tag,
            )


def _upload(
    folder: Path,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    branch: str | None = None,
    create_pr: bool = False,
    tag: str | None = None,
) -> str:
    import hub

    result = hub.upload_bundle(
        folder,
        repo_id,
        private=bool(private),
        commit_message=commit_message,
        revision=branch,
        tag=tag,
        token=token,
        create_pr=create_pr,
    )
    return result.commit_url
