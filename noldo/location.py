"""Where a store lives: every command reaches the files of a store ``ROOT`` through :class:`StoreLocation`.

A location is a local directory (a path or a ``file://`` URL, :class:`LocalLocation`) or an object
store URL (``s3://bucket/prefix``, ``gs://``, ``az://``, ``hf://``; :class:`ObjectLocation`, on
fsspec). Both offer the same methods, so the commands never ask which one they have. Paths inside
a store are POSIX-style, relative to ``ROOT`` (``nol.zarr/s2/c/0/0/0/0/0``, ``nol.parquet``).

Credentials never pass through here as data: they come from each file system's standard chain
(for S3 ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
profiles) or from ``storage_options``; a location prints as its URL only, and when it is sent to
a dask worker its secret options stay behind (the worker uses its own environment).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from noldo.errors import NoldoError
from noldo.files import atomic_write_bytes, remove_partials, sha256_file

_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")
#: Storage options that are secrets: never printed, logged, written or sent to a dask worker.
SECRET_OPTION = re.compile(r"secret|token|password|credential|key|sas|connection_string", re.IGNORECASE)
#: URL schemes served through fsspec, and the package each needs.
OBJECT_SCHEMES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "hf": "huggingface_hub",
                  "memory": "fsspec"}
#: What noldo asks of each object store unless the user says otherwise: fresh listings (other
#: writers change the bucket), and on S3 a SHA-256 checksum the store keeps with every object.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "s3": {"use_listings_cache": False, "s3_additional_kwargs": {"ChecksumAlgorithm": "SHA256"}},
}
_HASH_BLOCK = 4 << 20


def default_state_root() -> Path:
    """Where builds on object storage keep their resume state unless ``--state`` says otherwise."""
    base = os.environ.get("NOLDO_STATE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "noldo/state"
    return Path(base).expanduser()


class StoreLocation:
    """A store ``ROOT``; ``StoreLocation(root)`` gives the kind the root names.

    ``storage_options`` go to the object store's file system (ignored for local paths); ``state`` is
    the local directory for build state (default: ``ROOT/.noldo`` on disk, a per-URL folder of
    :func:`default_state_root` on object storage).

    Example:
        >>> StoreLocation("demo-data")
        LocalLocation('demo-data')
        >>> StoreLocation("s3://noldo-test/demo").url
        's3://noldo-test/demo'
    """

    def __new__(cls, root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None,
                state: str | os.PathLike[str] | None = None) -> StoreLocation:
        if cls is StoreLocation:
            match = _URL.match(os.fspath(root))
            cls = ObjectLocation if match and match["scheme"].lower() != "file" else LocalLocation
        return super().__new__(cls)

    @classmethod
    def of(cls, root: RootLike) -> StoreLocation:
        """``root`` as a location (a location is returned as it is)."""
        return root if isinstance(root, StoreLocation) else StoreLocation(root)

    #: True where several machines can reach the store (object storage); see :meth:`shared`.
    remote = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def with_state(self, state: str | os.PathLike[str]) -> StoreLocation:
        """The same store with its build state in the local directory ``state``."""
        moved = copy.copy(self)
        moved.state = Path(state).expanduser()
        return moved

    def state_dir(self, *parts: str) -> Path:
        """A local directory for build state (not part of the published store)."""
        return self.state.joinpath(*parts)

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A Parquet file as a DataFrame, decoded from an Arrow buffer of its bytes."""
        return pq.read_table(pa.BufferReader(self.read_bytes(rel)), columns=columns).to_pandas()

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=2) + "\n").encode())

    def stored_sha256(self, rel: str) -> str | None:
        """The SHA-256 the store itself keeps for a file (S3 ``ChecksumSHA256``), or None."""
        return None

    # What every kind implements: ``__str__``, ``__eq__``, ``__hash__``, ``is_store_dir``, ``exists``,
    # ``is_file``, ``read_bytes``, ``size``, ``sizes``, ``sha256``, ``children``, ``zarr_store``,
    # ``write_bytes``, ``remove``, ``remove_partials``.


class LocalLocation(StoreLocation):
    """A store in a local (or shared POSIX) directory; writes are atomic by temporary file and rename."""

    def __init__(self, root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None,
                 state: str | os.PathLike[str] | None = None) -> None:
        text = os.fspath(root)
        if match := _URL.match(text):
            text = "/" + match["rest"].lstrip("/")
        self.path = Path(text).expanduser()
        self.state = Path(state).expanduser() if state else self.path / ".noldo"

    def __str__(self) -> str:
        return str(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalLocation) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    def _local(self, rel: str) -> Path:
        return self.path / rel if rel else self.path

    def lock_dir(self) -> Path:
        """Where the split locks live: always inside ROOT, whatever the state directory."""
        return self.path / ".noldo" / "locks"

    # --- reading ----------------------------------------------------------------------------------
    def is_store_dir(self) -> bool:
        """True if ROOT is a directory (a store or the place for one); False if it is missing."""
        if self.path.exists() and not self.path.is_dir():
            raise NoldoError(f"{self.path} exists and is not a directory")
        return self.path.is_dir()

    def exists(self, rel: str = "") -> bool:
        return self._local(rel).exists()

    def is_file(self, rel: str) -> bool:
        return self._local(rel).is_file()

    def read_bytes(self, rel: str) -> bytes:
        return self._local(rel).read_bytes()

    def size(self, rel: str) -> int:
        return self._local(rel).stat().st_size

    def sizes(self, rel: str = "") -> dict[str, int]:
        """``path → bytes`` of every file below ``rel``, sorted by path."""
        folder = self._local(rel)
        return {path.relative_to(self.path).as_posix(): path.stat().st_size
                for path in sorted(folder.rglob("*")) if path.is_file()}

    def sha256(self, rel: str, progress: Callable[[int], Any] | None = None) -> str:
        return sha256_file(self._local(rel), progress)

    def children(self, rel: str = "") -> list[str]:
        """Names of the entries directly below ``rel``, sorted."""
        folder = self._local(rel)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def zarr_store(self, rel: str, read_only: bool = True) -> zarr.abc.store.Store:
        """The zarr store of a group below ROOT."""
        return zarr.storage.LocalStore(self._local(rel), read_only=read_only)

    # --- writing ----------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a file atomically: readers see the old content or the whole new one."""
        atomic_write_bytes(self._local(rel), data)

    def remove(self, rel: str) -> None:
        """Delete a file or a folder below ROOT; nothing if it is not there."""
        path = self._local(rel)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def remove_partials(self, rel: str) -> int:
        """Delete leftovers of interrupted atomic writes below ``rel``; returns how many."""
        return remove_partials(self._local(rel))


class ObjectLocation(StoreLocation):
    """A store on object storage, reached through fsspec (``s3fs``, ``gcsfs``, ``adlfs``, ``huggingface_hub``).

    Every object is written by one PUT (or one completed multipart upload), which is atomic: a
    reader sees no object or the whole one. The build state lives in a local directory.
    """

    remote = True

    def __init__(self, root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None,
                 state: str | os.PathLike[str] | None = None) -> None:
        self.url = os.fspath(root).rstrip("/")
        self.scheme = _URL.match(self.url)["scheme"].lower()
        if self.scheme not in OBJECT_SCHEMES:
            raise NoldoError(f"{self.url}: {self.scheme}:// stores are not supported; give a local directory or an "
                             f"s3://, gs://, az:// or hf:// URL")
        self.options = {**DEFAULT_OPTIONS.get(self.scheme, {}), **(storage_options or {})}
        self.state = Path(state).expanduser() if state else default_state_root() / _state_name(self.url)
        self._fs: Any = None
        self._pid = -1

    def __str__(self) -> str:
        return self.url

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectLocation) and self.url == other.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple:
        """Sent to a dask worker without its secrets: the worker takes credentials from its environment."""
        public = {k: v for k, v in self.options.items() if not SECRET_OPTION.search(k)}
        return type(self), (self.url, public, self.state)

    @property
    def fs(self) -> Any:
        """The fsspec file system (one per process: a forked data-loader worker opens its own)."""
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            try:
                self._fs = fsspec.filesystem(self.scheme, **self.options)
            except ImportError:
                raise NoldoError(f"{self.url}: {self.scheme}:// stores need the {OBJECT_SCHEMES[self.scheme]} package "
                                 f"(pip install {OBJECT_SCHEMES[self.scheme]})") from None
            self._pid = os.getpid()
        return self._fs

    def _key(self, rel: str) -> str:
        """The file system's path of ``rel`` (``bucket/prefix/rel``)."""
        base = self.fs._strip_protocol(self.url)
        return f"{base}/{rel}" if rel else base

    def _rel(self, key: str) -> str:
        return key[len(self._key("")):].lstrip("/")

    # --- reading ----------------------------------------------------------------------------------
    def is_store_dir(self) -> bool:
        """True if anything is stored below ROOT; False if nothing is (the place for a new store)."""
        try:
            if self.fs.isfile(self._key("")):
                raise NoldoError(f"{self.url} is an object, not a prefix for a store")
            return bool(self.fs.ls(self._key(""), detail=False))
        except FileNotFoundError:
            return False
        except PermissionError as exc:
            raise NoldoError(f"{self.url}: access denied ({exc}); check the credentials") from None

    def exists(self, rel: str = "") -> bool:
        return self.fs.exists(self._key(rel))

    def is_file(self, rel: str) -> bool:
        return self.fs.isfile(self._key(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._key(rel))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self._key(rel)))

    def sizes(self, rel: str = "") -> dict[str, int]:
        """``path → bytes`` of every object below ``rel`` (one paginated listing), sorted by path."""
        try:
            found = self.fs.find(self._key(rel), detail=True)
        except FileNotFoundError:
            return {}
        return {self._rel(key): int(info["size"]) for key, info in sorted(found.items())
                if info.get("type") != "directory"}

    def sha256(self, rel: str, progress: Callable[[int], Any] | None = None) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self._key(rel), "rb", block_size=_HASH_BLOCK) as f:
            while block := f.read(_HASH_BLOCK):
                digest.update(block)
                if progress is not None:
                    progress(len(block))
        return digest.hexdigest()

    def stored_sha256(self, rel: str) -> str | None:
        """S3's own SHA-256 of an object written in one PUT (None for multipart or unchecked objects)."""
        if self.scheme != "s3":
            return None
        bucket, key, _ = self.fs.split_path(self._key(rel))
        head = self.fs.call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        value = head.get("ChecksumSHA256")
        if not value or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None
        return base64.b64decode(value).hex()

    def children(self, rel: str = "") -> list[str]:
        """Names of the entries directly below ``rel``, sorted."""
        try:
            return sorted(key.rstrip("/").rsplit("/", 1)[-1] for key in self.fs.ls(self._key(rel), detail=False))
        except FileNotFoundError:
            return []

    def zarr_store(self, rel: str, read_only: bool = True) -> zarr.abc.store.Store:
        """The zarr store of a group below ROOT (zarr's FsspecStore: concurrent, ranged reads)."""
        return zarr.storage.FsspecStore.from_url(f"{self.url}/{rel}", storage_options=self.options,
                                                 read_only=read_only)

    # --- writing ----------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """One PUT: readers see the old object or the whole new one."""
        self.fs.pipe_file(self._key(rel), data)

    def create(self, rel: str, data: bytes) -> bool:
        """Write an object only if none exists (a conditional, create-only PUT); False if one does."""
        try:
            self.fs.pipe_file(self._key(rel), data, mode="create")
        except FileExistsError:
            return False
        return True

    def read_tagged(self, rel: str) -> tuple[bytes, str] | None:
        """An object's bytes and its ETag (for a later conditional delete), or None if it is missing."""
        try:
            tag = self.fs.info(self._key(rel)).get("ETag", "")
            return self.fs.cat_file(self._key(rel)), tag
        except FileNotFoundError:
            return None

    def delete_if(self, rel: str, tag: str) -> bool:
        """Delete an object only if it is still the one read with ``tag`` (S3 ``If-Match``); False if not."""
        if self.scheme != "s3" or not tag:
            self.fs.rm_file(self._key(rel))
            return True
        bucket, key, _ = self.fs.split_path(self._key(rel))
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=tag)
        except (FileNotFoundError, OSError):
            return False
        return True

    def remove(self, rel: str) -> None:
        """Delete an object or every object below a prefix; nothing if there is none."""
        keys = list(self.sizes(rel)) if rel == "" or not self.is_file(rel) else [rel]
        if keys:
            self.fs.rm([self._key(k) for k in keys])

    def remove_partials(self, rel: str) -> int:
        """Abort the multipart uploads an interrupted writer left below ``rel`` (they are invisible but
        billed); returns how many."""
        if self.scheme != "s3":
            return 0
        bucket, prefix, _ = self.fs.split_path(self._key(rel))
        count, pages = 0, {"KeyMarker": "", "UploadIdMarker": ""}
        while True:
            listing = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix.rstrip("/") + "/",
                                      **{k: v for k, v in pages.items() if v})
            for upload in listing.get("Uploads", []):
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"],
                                UploadId=upload["UploadId"])
                count += 1
            if not listing.get("IsTruncated"):
                return count
            pages = {"KeyMarker": listing.get("NextKeyMarker", ""),
                     "UploadIdMarker": listing.get("NextUploadIdMarker", "")}


def _state_name(url: str) -> str:
    """A readable folder name for a store URL (``s3/bucket/prefix-1a2b3c4d``)."""
    scheme, rest = url.split("://", 1)
    tag = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{scheme}/{re.sub(r'[^A-Za-z0-9._/-]', '_', rest).strip('/')}-{tag}"


#: What every API accepts as a store ROOT: a path, a URL or a location.
RootLike = str | os.PathLike | StoreLocation
