"""The Hugging Face hub as noldo talks to it: the endpoint, its errors in one line, commits, blob ids.

Shared by ``noldo download`` (:mod:`noldo.download`) and the stores read in place from the hub
(``hf://`` locations, :mod:`noldo.location`).
"""

from __future__ import annotations

import hashlib
import os
import re

from noldo.errors import NoldoError


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's bytes (what the hub reports as a non-LFS file's ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def endpoint() -> str:
    """The hub endpoint: ``HF_ENDPOINT`` (a mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_error(exc: Exception, repo: str, revision: str) -> NoldoError:
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, RevisionNotFoundError):
        return NoldoError(f"revision {revision!r} does not exist in dataset {repo} at {endpoint()}")
    if isinstance(exc, RepositoryNotFoundError):
        return NoldoError(f"dataset {repo} was not found at {endpoint()} (or it is private: run `hf auth login`)")
    if isinstance(exc, OfflineModeIsEnabled):
        return NoldoError("HF_HUB_OFFLINE is set and the files are not in the download root yet")
    return NoldoError(f"cannot reach the Hugging Face hub at {endpoint()}: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}")


def resolve_commit(repo: str, revision: str) -> str:
    """The commit a revision (branch, tag or commit) of a hub dataset points to now."""
    from huggingface_hub import HfApi

    try:
        commit = HfApi(endpoint=endpoint()).dataset_info(repo, revision=revision).sha
    except Exception as exc:  # the hub's HTTP and connection errors
        raise hub_error(exc, repo, revision) from None
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise NoldoError(f"the hub did not resolve revision {revision!r} of {repo} to a commit")
    return commit
