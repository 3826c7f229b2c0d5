"""Model repositories in object storage (s3://, gs://, as://), mirrored into a local folder.

Triton reads a remote repository by copying it to a local folder before a load; so do we:
each scan brings the local mirror up to date (only the objects whose size or tag changed
travel), and the rest of the server reads the mirror like any repository on disk, so
polling and explicit loads see new versions. fsspec and its implementations (s3fs, gcsfs,
adlfs) are imported only here, and only when a remote repository is given.

Paths, as Triton spells them, and their credentials (read from the environment, as in Triton):
  s3://bucket/path                   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
  s3://host:port/bucket/path         AWS_DEFAULT_REGION (the second form: an S3 API at host:port,
  s3://https://host:port/bucket/path   over HTTP unless https:// is written)
  gs://bucket/path                   GOOGLE_APPLICATION_CREDENTIALS
  as://account/container/path        AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TritonError

REMOTE_SCHEMES = ("s3://", "gs://", "as://")

# The fsspec implementation and the extra that installs it, per scheme.
_IMPLEMENTATIONS = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "as": ("adlfs", "azure")}

# s3://[http(s)://]host:port/bucket/path: an S3 API at another address (MinIO, a local server).
_S3_ENDPOINT = re.compile(r"^s3://(?:(https?)://)?([0-9A-Za-z.\-]+):([0-9]+)/(.+)$")


def is_remote(root: str | os.PathLike[str]) -> bool:
    return isinstance(root, str) and root.startswith(REMOTE_SCHEMES)


@dataclass(frozen=True)
class RemoteLocation:
    """A parsed remote repository path: what fsspec needs to reach it."""

    url: str  # as the user wrote it (used in messages)
    scheme: str  # s3, gs or as
    root: str  # bucket/path, as fsspec names it
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def bucket(self) -> str:
        return self.root.split("/", 1)[0]


def parse_location(url: str, env: dict[str, str] | None = None) -> RemoteLocation:
    env = dict(os.environ) if env is None else env
    scheme = url.split("://", 1)[0]
    options: dict[str, Any] = {}
    if scheme == "s3":
        client: dict[str, Any] = {}
        m = _S3_ENDPOINT.match(url)
        if m:
            protocol, host, port, root = m.groups()
            client["endpoint_url"] = f"{protocol or 'http'}://{host}:{port}"
        else:
            root = url[len("s3://"):]
        if env.get("AWS_DEFAULT_REGION"):
            client["region_name"] = env["AWS_DEFAULT_REGION"]
        options["client_kwargs"] = client
    elif scheme == "gs":
        root = url[len("gs://"):]
        if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
            options["token"] = env["GOOGLE_APPLICATION_CREDENTIALS"]
    elif scheme == "as":
        account, _, root = url[len("as://"):].partition("/")
        options["account_name"] = account or env.get("AZURE_STORAGE_ACCOUNT", "")
        if env.get("AZURE_STORAGE_KEY"):
            options["account_key"] = env["AZURE_STORAGE_KEY"]
    else:
        raise TritonError.invalid_arg(f"unsupported model repository path '{url}'")
    root = root.strip("/")
    if not root:
        raise TritonError.invalid_arg(
            f"model repository path '{url}' names no bucket: write {scheme}://bucket/path")
    return RemoteLocation(url, scheme, root, options)


def _filesystem(loc: RemoteLocation) -> Any:
    module, extra = _IMPLEMENTATIONS[loc.scheme]
    try:
        import fsspec
        __import__(module)
    except ImportError as e:
        raise TritonError.invalid_arg(
            f"model repository '{loc.url}' needs {module} ({e.name} is not installed): "
            f"pip install 'triton-core[{extra}]'") from None
    protocol = {"s3": "s3", "gs": "gcs", "as": "abfs"}[loc.scheme]
    # A fresh instance without listing caches: each scan must see what is there now.
    return fsspec.filesystem(protocol, skip_instance_cache=True, use_listings_cache=False,
                             **loc.storage_options)


def _signature(info: dict[str, Any]) -> tuple:
    """What changes when an object is rewritten: its size and tag (or modification time)."""
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") \
        or info.get("last_modified") or info.get("mtime") or info.get("updated")
    return (info.get("size"), str(tag))


class RemoteMirror:
    """One remote repository and the local folder that holds its copy."""

    def __init__(self, url: str, cache_root: Path | None = None) -> None:
        self.location = parse_location(url)
        self._own_cache = cache_root is None
        mount = os.environ.get("TRITON_AWS_MOUNT_DIRECTORY") if self.location.scheme == "s3" else None
        if cache_root is None and mount:
            cache_root, self._own_cache = Path(mount), False
        self.local = Path(cache_root) if cache_root else Path(tempfile.mkdtemp(prefix="triton-repo-"))
        self.local.mkdir(parents=True, exist_ok=True)
        self._fs: Any = None
        self._copied: dict[str, tuple] = {}  # relative path -> signature of the copy on disk
        # Loads run on several threads, each scanning: one copies while the others wait.
        self._sync_lock = threading.Lock()

    def _filesystem(self) -> Any:
        if self._fs is None:
            self._fs = _filesystem(self.location)
        return self._fs

    def _failure(self, e: BaseException) -> TritonError:
        loc = self.location
        detail = str(e) or type(e).__name__
        if isinstance(e, PermissionError):
            hint = {"s3": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
                    "gs": "GOOGLE_APPLICATION_CREDENTIALS",
                    "as": "AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY"}[loc.scheme]
            return TritonError.invalid_arg(
                f"failed to read model repository '{loc.url}': access denied ({detail}); "
                f"check the credentials in {hint}")
        if isinstance(e, FileNotFoundError):
            return TritonError.invalid_arg(
                f"failed to stat model repository path '{loc.url}': it does not exist ({detail})")
        return TritonError.invalid_arg(f"failed to read model repository '{loc.url}': {detail}")

    def _listing(self) -> dict[str, dict[str, Any]]:
        """Every object under the root: relative path -> its details."""
        fs, loc = self._filesystem(), self.location
        try:
            try:
                fs.info(loc.bucket)  # exists() would hide a refusal (403) as "missing"
            except FileNotFoundError:
                raise FileNotFoundError(f"bucket '{loc.bucket}' does not exist") from None
            found = fs.find(loc.root, detail=True)
        except Exception as e:  # the client libraries' own errors: reported with the path
            raise self._failure(e) from e
        if not found and loc.root != loc.bucket:  # an empty bucket is an empty repository
            raise self._failure(FileNotFoundError(f"no folder '{loc.root}' in bucket '{loc.bucket}'"))
        prefix = loc.root + "/"
        out = {}
        for key, info in found.items():
            key = key.strip("/")
            if info.get("type") == "directory" or not key.startswith(prefix):
                continue
            rel = key[len(prefix):]
            # no object may leave the mirror's folder
            if any(part in ("", ".", "..") for part in rel.split("/")):
                continue
            out[rel] = info
        return out

    def sync(self) -> None:
        """Bring the local copy up to date with the remote repository."""
        with self._sync_lock:
            self._sync()

    def _sync(self) -> None:
        listing = self._listing()
        fs = self._filesystem()
        for rel, info in sorted(listing.items()):
            sig = _signature(info)
            target = self.local / rel
            if self._copied.get(rel) == sig and target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            try:
                fs.get_file(f"{self.location.root}/{rel}", str(partial))
            except Exception as e:
                partial.unlink(missing_ok=True)
                raise self._failure(e) from e
            os.replace(partial, target)  # a reader sees the old file or the new one, never half
            self._copied[rel] = sig
        self._remove_gone(set(listing))

    def _remove_gone(self, present: set[str]) -> None:
        for path in sorted(self.local.rglob("*"), reverse=True):  # children before parents
            rel = path.relative_to(self.local).as_posix()
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            elif rel not in present:
                path.unlink()
                self._copied.pop(rel, None)

    def close(self) -> None:
        if self._own_cache:
            shutil.rmtree(self.local, ignore_errors=True)
