"""Where a store lives: every command reaches the files of a store ``ROOT`` through :class:`StoreLocation`.

A location is a local directory (a path or a ``file://`` URL, :class:`LocalLocation`) or an object
store URL (``s3://bucket/prefix``, ``gs://``, ``az://``, ``hf://``; :class:`ObjectLocation`, on
fsspec; ``hf://datasets/ORG/NAME@REVISION`` is a published release read in place,
:class:`ReleaseLocation`). All offer the same methods, so the commands never ask which they have. Paths inside
a store are POSIX-style, relative to ``ROOT`` (``nol.zarr/s2/c/0/0/0/0/0``, ``nol.parquet``).

Credentials never pass through here as data: they come from each file system's standard chain
(for S3 ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
profiles) or from ``storage_options``; a location prints as its URL only, and when it is sent to
a dask worker its secret options stay behind (the worker uses its own environment).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

from noldo.errors import NoldoError
from noldo.files import HASH_BLOCK, atomic_write_bytes, hash_stream, remove_partials, sha256_file
from noldo.hub import endpoint, git_blob_id, resolve_commit

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
SINGLE_PUT = 5 << 30  # S3's largest single PUT
MANIFEST = "manifest.json"  # a store's list of files with their sha256 (noldo.manifest writes it)
#: Shard indexes a reader of an object store keeps (a few KiB each).
SHARD_INDEXES = 4096
#: Checked objects a release's store keeps in memory, so the ranged reads of one shard fetch it once.
VERIFIED_CACHE_BYTES = 1 << 30


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
            scheme = match["scheme"].lower() if match else "file"
            cls = LocalLocation if scheme == "file" else ReleaseLocation if scheme == "hf" else ObjectLocation
        return super().__new__(cls)

    @classmethod
    def of(cls, root: RootLike) -> StoreLocation:
        """``root`` as a location (a location is returned as it is)."""
        return root if isinstance(root, StoreLocation) else StoreLocation(root)

    #: True for object storage: every machine of a cluster reaches it, so dask workers may write its shards.
    remote = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def with_state(self, state: str | os.PathLike[str]) -> StoreLocation:
        """The same store with its build state in the local directory ``state``."""
        moved = object.__new__(type(self))  # not copy.copy: it would pickle, leaving the secrets behind
        moved.__dict__.update(self.__dict__, state=Path(state).expanduser())
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

    def __reduce__(self) -> tuple:
        return type(self), (str(self.path), None, self.state)

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
        with self.fs.open(self._key(rel), "rb", block_size=HASH_BLOCK) as f:
            return hash_stream(f, progress=progress).hexdigest()

    def stored_sha256(self, rel: str) -> str | None:
        """S3's own SHA-256 of an object written in one PUT (None for multipart or unchecked objects)."""
        if self.scheme != "s3":
            return None
        bucket, key, _ = self.fs.split_path(self._key(rel))
        head = self.fs.call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        value = head.get("ChecksumSHA256")
        multipart = "-" in head.get("ETag", "")  # its checksum is one of the parts' checksums, not of the bytes
        if not value or multipart or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None
        return base64.b64decode(value).hex()

    def children(self, rel: str = "") -> list[str]:
        """Names of the entries directly below ``rel``, sorted."""
        try:
            return sorted(key.rstrip("/").rsplit("/", 1)[-1] for key in self.fs.ls(self._key(rel), detail=False))
        except FileNotFoundError:
            return []

    def zarr_store(self, rel: str, read_only: bool = True) -> zarr.abc.store.Store:
        """The zarr store of a group below ROOT (zarr's FsspecStore: concurrent, ranged reads); a reader's
        keeps the shard indexes it read, so each chunk read after the first costs one request."""
        store = zarr.storage.FsspecStore.from_url(f"{self.scheme}://{self._key(rel)}", storage_options=self.options,
                                                  read_only=read_only)
        return ShardIndexCache(store) if read_only else store

    # --- writing ----------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Readers see the old object or the whole new one. On S3 one PUT up to S3's 5 GiB limit (not a
        multipart upload), so the store keeps the object's own SHA-256 for ``verify --quick``."""
        if self.scheme == "s3":
            self.fs.pipe_file(self._key(rel), data, chunksize=SINGLE_PUT // 2)  # s3fs: one PUT below 2 × chunksize
        else:
            self.fs.pipe_file(self._key(rel), data)

    def upload(self, rel: str, path: Path) -> None:
        """Copy a local file to ``rel`` (a multipart upload above the file system's block size; the object
        appears only once complete)."""
        self.fs.put_file(str(path), self._key(rel))

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


class ReleaseLocation(ObjectLocation):
    """A published noldo release read in place from the Hugging Face hub: ``hf://datasets/ORG/NAME[@REVISION]``.

    The revision is resolved to a commit once, and every read is made at that commit, so a branch that
    moves meanwhile cannot mix two releases. Nothing read is trusted before it is checked: the
    release's ``manifest.json`` against the hub's own record of it (git blob id, or LFS sha256), and
    every other file — whole shards included — against the manifest's sha256 before its bytes are
    used (:class:`VerifiedStore`). A release is read-only.
    """

    def __init__(self, root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None,
                 state: str | os.PathLike[str] | None = None) -> None:
        super().__init__(root, storage_options, state)
        repo, _, revision = self.url.removeprefix("hf://").partition("@")
        if not repo.startswith("datasets/") or repo.count("/") != 2:
            raise NoldoError(f"{self.url}: a release on the hub is hf://datasets/ORG/NAME[@REVISION]")
        self.repo, self.revision = repo.removeprefix("datasets/"), revision or "main"
        self.options = {"endpoint": endpoint(), **self.options}  # HF_ENDPOINT as it is now (a mirror)
        self._commit: str | None = None
        self._manifest: dict[str, dict[str, Any]] | None = None

    @property
    def commit(self) -> str:
        if self._commit is None:
            self._commit = resolve_commit(self.repo, self.revision)
        return self._commit

    def _key(self, rel: str) -> str:
        base = f"datasets/{self.repo}@{self.commit}"
        return f"{base}/{rel}" if rel else base

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """``path → entry`` of the release's manifest, once it matched the hub's record of the file."""
        if self._manifest is None:
            try:
                data, info = self.fs.cat_file(self._key(MANIFEST)), self.fs.info(self._key(MANIFEST))
            except FileNotFoundError:
                raise NoldoError(f"{self.url} has no {MANIFEST}: it is not a noldo release") from None
            lfs = info.get("lfs") or {}
            if (hashlib.sha256(data).hexdigest() != lfs.get("sha256")) if lfs else (
                    git_blob_id(data) != info.get("blob_id")):
                raise NoldoError(f"{self.url}/{MANIFEST} does not match the hub's record of it at commit "
                                 f"{self.commit[:12]}; nothing of the release was used")
            self._manifest = {entry["path"]: entry for entry in json.loads(data)["files"]}
        return self._manifest

    def check(self, rel: str, data: bytes) -> bytes:
        """``data`` read from ``rel`` if its sha256 is the manifest's; a clear error otherwise."""
        if rel == MANIFEST:
            self.manifest  # noqa: B018 -- checks it against the hub
            return data
        entry = self.manifest.get(rel)
        if entry is None:
            raise NoldoError(f"{self.url}/{rel} is not listed in the release's {MANIFEST}; it was not used")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise NoldoError(f"{self.url}/{rel}: sha256 does not match the release's {MANIFEST} (changed on the hub "
                             "or in transit); its data were not used")
        return data

    def read_bytes(self, rel: str) -> bytes:
        return self.check(rel, super().read_bytes(rel))

    def zarr_store(self, rel: str, read_only: bool = True) -> zarr.abc.store.Store:
        """The group's zarr store; every object it returns was checked whole against the manifest."""
        if not read_only:
            self._read_only()
        return VerifiedStore(super().zarr_store(rel), lambda key, data: self.check(f"{rel}/{key}", data))

    def _read_only(self, *args: Any) -> Any:
        raise NoldoError(f"{self.url} is a published release on the hub and read-only; fetch it with "
                         f"noldo download --release {self.repo} --revision {self.revision} --root DIR to change it")

    write_bytes = upload = create = delete_if = remove = remove_partials = _read_only


class ShardIndexCache(zarr.storage.WrapperStore):
    """A read-only zarr store that keeps the suffix reads of shards (their chunk index, which zarr reads
    again before every chunk), up to :data:`SHARD_INDEXES` of them. A reader never sees a shard change:
    shards are written whole, once, before a split is finalised."""

    def __init__(self, store: zarr.abc.store.Store) -> None:
        super().__init__(store)
        self._indexes: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def _with_store(self, store: zarr.abc.store.Store) -> ShardIndexCache:
        return type(self)(store)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if not isinstance(byte_range, SuffixByteRequest):
            return await self._store.get(key, prototype, byte_range)
        found = self._indexes.get((key, byte_range.suffix))
        if found is None:
            found = await self._store.get(key, prototype, byte_range)
            if found is None:
                return None
            self._indexes[key, byte_range.suffix] = found
            if len(self._indexes) > SHARD_INDEXES:
                self._indexes.popitem(last=False)
        return found


class VerifiedStore(zarr.storage.WrapperStore):
    """A read-only zarr store that fetches each object whole, checks it (``check(key, bytes)`` raises if it
    is wrong) and only then serves it or the byte ranges asked of it; the last checked objects are kept
    (up to :data:`VERIFIED_CACHE_BYTES`) so the many ranged reads of one shard fetch it once."""

    def __init__(self, store: zarr.abc.store.Store, check: Callable[[str, bytes], bytes]) -> None:
        super().__init__(store)
        self._check = check
        self._checked: OrderedDict[str, bytes] = OrderedDict()
        self._pending: dict[str, Any] = {}

    def _with_store(self, store: zarr.abc.store.Store) -> VerifiedStore:
        return type(self)(store, self._check)

    async def _whole(self, key: str, prototype: Any) -> bytes | None:
        if key in self._checked:
            self._checked.move_to_end(key)
            return self._checked[key]
        if key not in self._pending:
            self._pending[key] = asyncio.ensure_future(self._store.get(key, prototype))
        try:
            buffer = await self._pending[key]
        finally:
            self._pending.pop(key, None)
        if buffer is None:
            return None
        data = self._check(key, buffer.to_bytes())
        self._checked[key] = data
        while sum(map(len, self._checked.values())) > VERIFIED_CACHE_BYTES and len(self._checked) > 1:
            self._checked.popitem(last=False)
        return data

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        data = await self._whole(key, prototype)
        if data is None:
            return None
        if isinstance(byte_range, RangeByteRequest):
            data = data[byte_range.start:byte_range.end]
        elif isinstance(byte_range, OffsetByteRequest):
            data = data[byte_range.offset:]
        elif isinstance(byte_range, SuffixByteRequest):
            data = data[-byte_range.suffix:]
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]


def _state_name(url: str) -> str:
    """A readable folder name for a store URL (``s3/bucket/prefix-1a2b3c4d``)."""
    scheme, rest = url.split("://", 1)
    tag = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{scheme}/{re.sub(r'[^A-Za-z0-9._/-]', '_', rest).strip('/')}-{tag}"


#: What every API accepts as a store ROOT: a path, a URL or a location.
RootLike = str | os.PathLike | StoreLocation
