"""``noldo download``: the published NoLDO-S12 files and our own Zarr releases, verified by sha256.

Sizes and sha256 come from the hub (``get_paths_info(..., expand=True)``: the LFS oid) or from a
release's ``manifest.json``, never from us. Files are fetched with HTTP range requests into
``<name>.part`` (so a killed download resumes where it stopped, across runs), hashed while they
stream, and renamed to their final name only once size and sha256 match. A mismatch is fetched
again once, then reported. ``HF_ENDPOINT`` selects a mirror; ``HF_HUB_OFFLINE=1`` uses what is
already in ``--out``.

A release is fetched at one commit (its revision resolved first, so a branch that moves during the
download cannot mix two releases); its ``manifest.json`` is checked against the hub's git blob id
of that commit, and every path it lists must stay inside the download root (:func:`release_path`),
or nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from noldo.catalog import HF_REPO, HF_REVISION, PUBLISHED_FILES
from noldo.errors import NoldoError
from noldo.files import atomic_write_json, hash_file, sha256_file
from noldo.hub import endpoint, git_blob_id, hub_error, offline, resolve_commit
from noldo.location import ObjectLocation, RootLike, StoreLocation

log = logging.getLogger(__name__)
STATE = ".noldo-download"
CHUNK = 1 << 20
ATTEMPTS = 3  # connection attempts per fetch (each resumes where the last stopped)


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: its path in the repository, size, sha256, and where it goes under the root."""

    path: str
    size: int
    sha256: str
    target: str  # relative to the download root
    split: str | None = None
    blob: str = ""  # git blob id: how the hub identifies a small (non-LFS) file, checked when no sha256

    def matches(self, path: Path, sha256: str | None = None) -> bool:
        """True if the file at ``path`` (its sha256 already known, or not) is this one."""
        if self.sha256:
            return (sha256 or sha256_file(path)) == self.sha256
        return git_blob_id(path.read_bytes()) == self.blob


_DRIVE = re.compile(r"^[A-Za-z]:")


def release_path(path: object, root: Path) -> str:
    """``path`` from a release's manifest if it is a relative POSIX path that stays inside ``root``.

    Refused: absolute paths, drive letters, backslashes, empty, ``.`` and ``..`` components, and paths
    whose existing parents below ``root`` are symbolic links leading out of it.
    """
    parts = path.split("/") if isinstance(path, str) else []
    if (not parts or path.startswith("/") or "\\" in path or _DRIVE.match(path)
            or any(part in ("", ".", "..") for part in parts)):
        raise NoldoError(f"the release's manifest lists {path!r}, which is not a relative path inside the "
                         "download root; nothing was written")
    inside = root.resolve()
    if not (root / path).resolve().is_relative_to(inside):
        raise NoldoError(f"the release's manifest lists {path!r}, which leads out of {root} through a symbolic "
                         "link; nothing was written")
    return path


def list_files(paths: list[str], repo: str, revision: str) -> list[RemoteFile]:
    """Size and sha256 (the LFS oid) of files in a hub dataset, from ``get_paths_info(expand=True)``.

    A small non-LFS file (a release's manifest.json) has no sha256 on the hub; it is checked against
    its git blob id instead.
    """
    from huggingface_hub import HfApi

    try:
        infos = HfApi(endpoint=endpoint()).get_paths_info(repo, paths, repo_type="dataset", revision=revision,
                                                          expand=True)
    except Exception as exc:  # the hub's HTTP and connection errors
        raise hub_error(exc, repo, revision) from None
    found = {info.path: info for info in infos if getattr(info, "size", None) is not None}
    if missing := [p for p in paths if p not in found]:
        raise NoldoError(f"{', '.join(missing)} not found in dataset {repo} at revision {revision}")
    return [RemoteFile(p, found[p].size, found[p].lfs.sha256 if found[p].lfs else "", p,
                       blob="" if found[p].lfs else found[p].blob_id) for p in paths]


def list_release(repo: str, commit: str, root: Path, fetch: Callable[[RemoteFile], None]) -> list[RemoteFile]:
    """The files of a noldo release at ``commit``, ``manifest.json`` last: the manifest (fetched first,
    into the download state, and checked against the hub) lists every file with size and sha256, and
    every path is checked to stay inside ``root`` before anything is written there."""
    remote = list_files(["manifest.json"], repo, commit)[0]
    staged = replace(remote, target=f"{STATE}/manifest-{commit}.json")
    fetch(staged)
    try:
        entries = json.loads((root / staged.target).read_text())["files"]
        files = [RemoteFile(e["path"], int(e["bytes"]), str(e["sha256"]), e["path"], e.get("split")) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise NoldoError(f"the manifest.json of {repo} is not a noldo manifest ({exc})") from None
    for file in files:
        release_path(file.path, root)
    return [*files, remote]


class Downloader:
    """Fetches files of one repository revision into a root: resumable, verified, atomic."""

    def __init__(self, root: Path, repo: str, revision: str, progress: bool = False,
                 repair: str = "noldo download") -> None:
        self.root, self.repo, self.revision, self.progress, self.repair = Path(root), repo, revision, progress, repair
        self.state_dir = self.root / STATE
        self.bytes_fetched = 0

    # --- the record of verified files, so a re-run does not hash gigabytes again -----------------
    def _verified(self) -> dict[str, list]:
        path = self.state_dir / "verified.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _remember(self, file: RemoteFile) -> None:
        verified = self._verified()
        stat = (self.root / file.target).stat()
        verified[file.target] = [stat.st_size, stat.st_mtime_ns, file.sha256 or file.blob]
        atomic_write_json(self.state_dir / "verified.json", verified)

    def is_verified(self, file: RemoteFile) -> bool:
        """True if the file is in place with the right sha256 (hashing only when it changed)."""
        path = self.root / file.target
        if not path.is_file() or path.stat().st_size != file.size:
            return False
        stat = path.stat()
        if self._verified().get(file.target) == [stat.st_size, stat.st_mtime_ns, file.sha256 or file.blob]:
            return True
        if file.matches(path):
            self._remember(file)
            return True
        return False

    def _listing(self, name: str, revision: str) -> Path:
        return self.state_dir / f"{name}-{revision.replace('/', '_')}.json"

    def save_listing(self, name: str, files: list[RemoteFile], revision: str) -> None:
        """Keep the file list under the revision the user named (offline runs cannot resolve it)."""
        atomic_write_json(self._listing(name, revision), {"commit": self.revision, "files": [asdict(f) for f in files]})

    def load_listing(self, name: str, revision: str) -> tuple[str, list[RemoteFile]]:
        """The commit and file list saved for ``revision`` by an online run."""
        path = self._listing(name, revision)
        if not path.exists():
            raise NoldoError(f"HF_HUB_OFFLINE is set and {self.root} has no listing of {name} at revision "
                             f"{revision}; run once online")
        listing = json.loads(path.read_text())
        if isinstance(listing, list):  # written before listings recorded their commit
            listing = {"commit": revision, "files": listing}
        return listing["commit"], [RemoteFile(**f) for f in listing["files"]]

    # --- fetching --------------------------------------------------------------------------------
    def fetch(self, file: RemoteFile, bar: tqdm | None = None) -> None:
        """Make ``file`` present and verified: resume a partial fetch, re-fetch once on a mismatch."""
        if self.is_verified(file):
            return
        if offline():
            raise NoldoError(f"HF_HUB_OFFLINE is set and {self.root / file.target} is missing or damaged; "
                             f"repair: {self.repair} (online)")
        target = self.root / file.target
        part = target.with_name(target.name + ".part")
        for attempt in (1, 2):
            digest = self._transfer(file, part, bar)
            if file.matches(part, digest):
                part.replace(target)
                self._remember(file)
                return
            part.unlink(missing_ok=True)
            log.warning("%s: checksum mismatch (attempt %d); fetching again", file.path, attempt)
        kind = "sha256" if file.sha256 else "git blob id"
        raise NoldoError(f"{target}: {kind} does not match the hub's ({(file.sha256 or file.blob)[:12]}…) after two "
                         f"downloads; the file was not kept; repair: {self.repair}")

    def _transfer(self, file: RemoteFile, part: Path, bar: tqdm | None) -> str:
        """Stream the rest of ``file`` into ``part``; returns the sha256 of the whole part file."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session

        part.parent.mkdir(parents=True, exist_ok=True)
        url = hf_hub_url(self.repo, file.path, repo_type="dataset", revision=self.revision, endpoint=endpoint())
        digest = hashlib.sha256()
        have = part.stat().st_size if part.exists() else 0
        if have > file.size:
            part.unlink()
            have = 0
        if have:
            hash_file(part, digest, bar.update if bar is not None else None)
        for attempt in range(ATTEMPTS):
            if have == file.size:
                break
            headers = {**build_hf_headers(), "Range": f"bytes={have}-"}
            try:
                with get_session().stream("GET", url, headers=headers, follow_redirects=True) as response:
                    if response.status_code == 404:
                        raise NoldoError(f"{file.path} not found at {url}")
                    response.raise_for_status()
                    if response.status_code == 200 and have:  # the server ignored the range: start over
                        digest, have = hashlib.sha256(), 0
                        part.unlink(missing_ok=True)
                    with open(part, "ab") as out:
                        for block in response.iter_bytes(CHUNK):
                            out.write(block)
                            digest.update(block)
                            have += len(block)
                            self.bytes_fetched += len(block)
                            if bar is not None:
                                bar.update(len(block))
            except NoldoError:
                raise
            except Exception as exc:  # dropped connections, timeouts, 5xx: resume from what arrived
                if attempt + 1 == ATTEMPTS:
                    raise NoldoError(f"downloading {file.path} failed ({type(exc).__name__}); re-run "
                                     f"`{self.repair}` to resume") from None
                log.info("%s: %s; resuming at byte %d", file.path, type(exc).__name__, have)
        return digest.hexdigest()

    def fetch_all(self, files: list[RemoteFile]) -> None:
        """Fetch every file with a progress bar per file and one overall."""
        todo = [f for f in files if not self.is_verified(f)]
        with tqdm(total=sum(f.size for f in todo), unit="B", unit_scale=True, desc="total",
                  disable=not self.progress) as overall:
            for file in todo:
                with tqdm(total=file.size, unit="B", unit_scale=True, desc=file.path, leave=False,
                          disable=not self.progress) as bar:
                    self.fetch(file, _Both(bar, overall))


class _Both:
    """Update two progress bars at once."""

    def __init__(self, *bars: tqdm) -> None:
        self.bars = bars

    def update(self, n: int) -> None:
        for bar in self.bars:
            bar.update(n)


class Uploads:
    """A release fetched onto object storage: each file is fetched and verified locally (in the store's
    state directory, resumable as ever), uploaded in one PUT (or one multipart upload, atomic either
    way), recorded, and its local copy removed, so the local disk holds one file at a time. The
    manifest goes last, so the store is complete only once it is there."""

    def __init__(self, location: ObjectLocation, downloader: Downloader) -> None:
        self.location, self.downloader = location, downloader
        self.record = downloader.state_dir / "uploaded.json"

    def _uploaded(self) -> dict[str, list]:
        return json.loads(self.record.read_text()) if self.record.exists() else {}

    def done(self, file: RemoteFile, listing: Mapping[str, int]) -> bool:
        """True if the file was uploaded and its object is still there, at its size."""
        return (self._uploaded().get(file.target) == [file.size, file.sha256 or file.blob]
                and listing.get(file.target) == file.size)

    def upload_all(self, files: list[RemoteFile]) -> None:
        listing = self.location.sizes()
        for file in tqdm([f for f in files if not self.done(f, listing)], desc="upload", unit="file",
                         disable=not self.downloader.progress):
            self.downloader.fetch(file)
            local = self.downloader.root / file.target
            self.location.upload(file.target, local)
            uploaded = self._uploaded()
            uploaded[file.target] = [file.size, file.sha256 or file.blob]
            atomic_write_json(self.record, uploaded)
            local.unlink()


def download(what: Sequence[str], root: RootLike, revision: str = HF_REVISION, repo: str = HF_REPO,
             release: str | None = None, splits: Sequence[str] | None = None, dry_run: bool = False,
             progress: bool = False) -> dict[str, Any]:
    """Fetch published files (``what``) or a noldo release (``release``) into ``root``; returns a summary.

    A release may go to an object-store ROOT (:class:`Uploads`); published files are always local.
    """
    location = StoreLocation.of(root)
    remote = location if isinstance(location, ObjectLocation) else None
    if remote is not None and not release:
        raise NoldoError(f"{location}: the published zips and weights are downloaded to a local directory (give "
                         "--out DIR); a noldo release may go to object storage")
    root = location.state_dir("download") if remote else location.path  # downloads are local files (.part)
    if root.exists() and not root.is_dir():
        raise NoldoError(f"--out {root} exists and is not a directory")
    args = ["noldo", "download", "--out", str(root), "--revision", revision]
    args += ["--release", release] if release else [a for w in what for a in ("--what", w)]
    name = "release" if release else "published"
    if release and not offline():
        revision_listed, revision = revision, resolve_commit(release, revision)
    else:
        revision_listed = revision
    downloader = Downloader(root, release or repo, revision, progress, repair=shlex.join(args))
    uploads = Uploads(remote, downloader) if remote else None
    if offline():
        downloader.revision, files = downloader.load_listing(name, revision_listed)
    elif release:
        files = list_release(release, revision, root, downloader.fetch)
    else:
        files = list_files([p for w in what for p in PUBLISHED_FILES[w]], repo, revision)
        if unverifiable := [f.path for f in files if not f.sha256]:
            raise NoldoError(f"{', '.join(unverifiable)} in {repo} has no LFS sha256 to verify it against")
    if release:
        files = [f for f in files if not splits or f.split in splits or f.target == "manifest.json"]
    if uploads is not None:
        listing = remote.sizes()
        missing = [f for f in files if not uploads.done(f, listing)]
    else:
        missing = [f for f in files if not downloader.is_verified(f)]
    summary = {"root": str(location), "repo": release or repo, "revision": revision, "endpoint": endpoint(),
               "files": len(files), "bytes": sum(f.size for f in files),
               "to_fetch": len(missing), "bytes_to_fetch": sum(f.size for f in missing)}
    if dry_run:
        return {**summary, "dry_run": True, "file_list": [{"path": f.path, "bytes": f.size, "sha256": f.sha256,
                                                           "present": f not in missing} for f in files]}
    root.mkdir(parents=True, exist_ok=True)
    if not offline():
        downloader.save_listing(name, files, revision_listed)
    if uploads is not None:
        uploads.upload_all(files)
    else:
        downloader.fetch_all(files)
    return {**summary, "bytes_fetched": downloader.bytes_fetched}
