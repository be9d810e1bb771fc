"""A loopback server that speaks the Hugging Face hub's file endpoints, for `noldo download` tests.

``GET /api/datasets/<repo>/revision/<revision>`` resolves a revision to its commit (``sha``);
``POST /api/datasets/<repo>/paths-info/<revision>`` answers sizes, LFS sha256 and git blob ids
(``oid``, as the hub does for every file); ``GET /api/datasets/<repo>/tree/<revision>/<path>``
lists a folder (``recursive``), paginated like the hub (a ``Link: <...>; rel="next"`` header, here
every :data:`TREE_PAGE` entries so clients must follow it); ``GET/HEAD
/datasets/<repo>/resolve/<revision>/<path>`` serves bytes with ETag, X-Repo-Commit and ranges
(``bytes=a-b``, ``bytes=a-``, ``bytes=-n``). It records the revisions files were fetched at, counts
the bytes it serves, and can corrupt a file's first downloads, serve slowly, or serve a tampered
file (:attr:`FakeHub.tampered`: other bytes than those its listings describe).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from collections import Counter

from noldo.testing.loopback import LoopbackServer, QuietHandler

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TREE_PAGE = 50  # entries per tree page (the hub's pages are larger; small pages test the pagination)


class FakeHub(LoopbackServer):
    """``with FakeHub({"repo": {"path": bytes}}) as hub: ... hub.url ...``."""

    def __init__(self, repos: dict[str, dict[str, bytes]], revisions: tuple[str, ...] = ("main", COMMIT),
                 lfs_exempt: tuple[str, ...] = ("manifest.json",), tree_page: int = TREE_PAGE) -> None:
        self.repos, self.revisions, self.lfs_exempt, self.tree_page = repos, revisions, lfs_exempt, tree_page
        self.served: Counter = Counter()
        self.fetched_at: Counter = Counter()  # revision → file downloads asked at it
        self.corrupt_next: Counter = Counter()  # path → how many downloads to corrupt
        self.delay = 0.0  # seconds per 64 KiB block, to make a download slow enough to kill
        self.tampered: dict[str, bytes] = {}  # path → bytes served instead (listings keep the true file's)
        self.sending = 0  # responses whose body is being sent (a killed client's ends with a broken pipe)
        self.lock = threading.Lock()
        super().__init__(self._handler())

    def entry(self, path: str, data: bytes) -> dict:
        """A file as the hub describes it: size, git blob id ``oid`` and, for an LFS file, its sha256."""
        # "oid" is the git blob id of what git stores: the file itself, or for an LFS file its
        # pointer (so it never identifies an LFS file's content)
        stored, digest = data, hashlib.sha256(data).hexdigest()
        if path not in self.lfs_exempt:
            stored = f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {len(data)}\n".encode()
        entry = {"type": "file", "path": path, "size": len(data),
                 "oid": hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()}
        if path not in self.lfs_exempt:
            entry["lfs"] = {"oid": digest, "size": len(data), "pointerSize": len(stored)}
        return entry

    def _handler(self):
        hub = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _error(self, code: int, error_code: str, message: str) -> None:
                self.send_body(code, json.dumps({"error": message}),
                               headers={"X-Error-Code": error_code, "X-Error-Message": message})

            def _repo(self, repo: str, revision: str) -> dict[str, bytes] | None:
                if repo not in hub.repos:
                    self._error(404, "RepoNotFound", f"Repository {repo} not found")
                    return None
                if revision not in hub.revisions:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return None
                return hub.repos[repo]

            def do_POST(self) -> None:
                m = urllib.parse.urlparse(self.path).path.split("/paths-info/")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                repo = m[0].removeprefix("/api/datasets/")
                files = self._repo(repo, urllib.parse.unquote(m[1]))
                if files is None:
                    return None
                form = urllib.parse.parse_qs(body)
                self.send_body(200, json.dumps([hub.entry(path, files[path]) for path in form.get("paths", [])
                                                if path in files]))

            def _tree(self, repo: str, revision: str, folder: str, query: dict[str, list[str]]) -> None:
                files = self._repo(repo, revision)
                if files is None:
                    return None
                prefix = f"{folder}/" if folder else ""
                below = sorted(p for p in files if p.startswith(prefix))
                if folder and not below:
                    return self._error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                entries, folders = [], set()
                for path in below:
                    rest = path[len(prefix):].split("/")
                    for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                        folders.add(prefix + "/".join(rest[:depth]))
                    if recursive or len(rest) == 1:
                        entries.append(hub.entry(path, files[path]))
                entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                            for f in sorted(folders)]
                entries.sort(key=lambda e: e["path"])
                start = int(query.get("cursor", ["0"])[0])
                page = entries[start:start + hub.tree_page]
                headers = {}
                if start + hub.tree_page < len(entries):
                    params = {**{k: v[0] for k, v in query.items()}, "cursor": str(start + hub.tree_page)}
                    link = urllib.parse.urlparse(self.path)._replace(query=urllib.parse.urlencode(params)).geturl()
                    headers["Link"] = f'<http://{self.headers["Host"]}{link}>; rel="next"'
                self.send_body(200, json.dumps(page), headers=headers)

            def _resolve(self, head: bool) -> None:
                path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
                repo_part, _, rest = path.removeprefix("/datasets/").partition("/resolve/")
                revision, _, name = rest.partition("/")
                files = self._repo(repo_part, revision)
                if files is None:
                    return None
                with hub.lock:
                    hub.fetched_at[revision] += not head
                if name not in files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist")
                data = hub.tampered.get(name, files[name])
                start, stop = 0, len(data)
                if (header := self.headers.get("Range")) and header.startswith("bytes="):
                    first, _, last = header[6:].partition("-")
                    if first:
                        start, stop = int(first), min(len(data), int(last) + 1) if last else len(data)
                    else:
                        start = max(0, len(data) - int(last))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                with hub.lock:
                    if not head and hub.corrupt_next[name] > 0:
                        hub.corrupt_next[name] -= 1
                        data = bytes([data[0] ^ 0xFF]) + data[1:]
                chunk = data[start:stop]
                partial = header is not None and header.startswith("bytes=")
                self.send_response(206 if partial else 200)
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{hashlib.sha256(files[name]).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                if partial:
                    self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return None
                with hub.lock:
                    hub.sending += 1
                try:
                    for offset in range(0, len(chunk), 65536):
                        block = chunk[offset:offset + 65536]
                        self.wfile.write(block)
                        self.wfile.flush()
                        with hub.lock:
                            hub.served[name] += len(block)
                        if hub.delay:
                            time.sleep(hub.delay)
                finally:
                    with hub.lock:
                        hub.sending -= 1
                return None

            def _revision(self) -> None:
                repo, _, revision = urllib.parse.urlparse(self.path).path.removeprefix(
                    "/api/datasets/").partition("/revision/")
                if self._repo(repo, urllib.parse.unquote(revision)) is not None:
                    self.send_body(200, json.dumps({"id": repo, "sha": COMMIT, "private": False}))

            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                if url.path.startswith("/api/datasets/") and "/tree/" in url.path:
                    repo, _, rest = urllib.parse.unquote(url.path).removeprefix("/api/datasets/").partition("/tree/")
                    revision, _, folder = rest.partition("/")
                    return self._tree(repo, revision, folder.strip("/"), urllib.parse.parse_qs(url.query))
                if self.path.startswith("/api/datasets/"):
                    return self._revision()
                return self._resolve(head=False)

            def do_HEAD(self) -> None:
                self._resolve(head=True)

        return Handler
