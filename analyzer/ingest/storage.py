"""The filesystem layer of ingestion: local paths stay `pathlib.Path`, URLs (`s3://`, `gs://`, any
fsspec protocol) become `RemotePath`s read through fsspec.

Why one small module: discovery, the event and CSV readers, config files, the W&B reader, the
cache and `--watch` need the same few things of a file system - list a folder, stat a file, read
a file whole or by byte range, tell a file from a folder. Local paths keep their fast path
(`os.scandir`, `open`: the readers call this module only for a `RemotePath`), and fsspec (with
s3fs / gcsfs, the `remote` extra) is imported only when a URL is given.

What a bucket costs: the prefix being analysed is listed once, recursively (`fs.find`, which S3
pages 1,000 keys per request) and discovery answers every "what is in this folder" from that
listing; file contents are fetched only by the readers, one file at a time (event files in
blocks of `BLOCK` bytes). Nothing here writes: the analyzer never puts an object into a bucket.

Typing: the readers are typed with `Path`; a `RemotePath` implements the part of `Path` they use
(name, parent(s), `/`, stem, suffix, relative_to, exists, is_file, is_dir, stat, read_bytes,
read_text, resolve) and is handed to them as a `Path` by `as_path` (one cast, here). The S3
end-to-end tests (tests/test_remote.py) run every reader on a bucket.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_mod
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, cast

__all__ = [
    "BLOCK",
    "FileStat",
    "Remote",
    "RemotePath",
    "StorageError",
    "as_path",
    "is_remote",
    "is_url",
    "iter_blocks",
    "parse_storage_options",
    "read_bytes",
    "read_range",
    "remote_path",
    "stat",
]

#: Bytes fetched per request when a remote file is read in pieces (event files).
BLOCK = 16 << 20
#: `scheme://`: a URL. `file://` is read as a local path (the fast path).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
INSTALL_HINT = "install the 'remote' extra: pip install 'offrl-workflow[remote]'"


class StorageError(OSError):
    """A remote file system could not be used (missing library, unknown protocol, credentials).

    An OSError, so every reader that turns an unreadable file into an issue does so for a bucket too."""


def is_url(text: object) -> bool:
    """`scheme://...` other than `file://` (which is read as a local path)."""
    if isinstance(text, RemotePath):
        return True
    if not isinstance(text, str):
        return False
    m = _URL.match(text)
    return m is not None and m.group(1).lower() != "file"


def is_remote(path: object) -> bool:
    return isinstance(path, RemotePath)


# --------------------------------------------------------------------------------------------------
# storage options


def parse_storage_options(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> fsspec storage options; dotted keys nest (`client_kwargs.region_name=x`).

    Values are read as YAML scalars (`anon=true` -> True, `max_attempts=3` -> 3), anything else
    stays a string. Raises ValueError naming the pair that has no `=`.
    """
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if not isinstance(value, (str, int, float, bool)) or value is None:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"{pair!r}: {p!r} is already set to a value")
            node = nxt
        node[parts[-1]] = value
    return out


# --------------------------------------------------------------------------------------------------
# what a listing says about a file


@dataclass(frozen=True)
class FileStat:
    """What decides whether a file changed: size, modification time and, remotely, the ETag."""

    size: int
    mtime_ns: int | None = None
    etag: str | None = None
    ino: tuple[int, int] | None = None  # local (device, inode): a rotated file is a new inode

    @property
    def mtime(self) -> float | None:
        return None if self.mtime_ns is None else self.mtime_ns / 1e9

    def key(self) -> list[Any]:
        """JSON-able identity of this version of the file (cache keys, --watch)."""
        return [self.size, self.mtime_ns, self.etag, list(self.ino) if self.ino else None]


def _mtime_ns(info: Mapping[str, Any]) -> int | None:
    for name in ("LastModified", "mtime", "updated", "last_modified", "modified", "timeCreated", "created"):
        v = info.get(name)
        if v is None:
            continue
        try:
            if isinstance(v, datetime):
                return int(v.timestamp() * 1e9)
            if isinstance(v, (int, float)):
                return int(float(v) * 1e9)
            if isinstance(v, str):
                return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1e9)
        except (ValueError, OverflowError, OSError):
            continue
    return None


def _stat_of(info: Mapping[str, Any]) -> FileStat:
    etag = None
    for name in ("ETag", "etag", "md5Hash", "generation", "checksum", "version_id"):
        if info.get(name) is not None:
            etag = str(info[name]).strip('"')
            break
    size = info.get("size", info.get("Size", 0))
    return FileStat(int(size or 0), _mtime_ns(info), etag)


@dataclass
class _Dir:
    files: dict[str, FileStat] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


def _oserror(exc: BaseException, where: str) -> OSError:
    """One-line OSError for any failure of a remote call (botocore, aiohttp, google-auth ...)."""
    if isinstance(exc, StorageError):
        return exc
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return StorageError(errno.ENOENT, f"not found ({text})", where)
    if isinstance(exc, PermissionError):
        return StorageError(errno.EACCES, f"access denied ({text})", where)
    if isinstance(exc, OSError) and exc.errno:
        return StorageError(exc.errno, exc.strerror or text, where)
    return StorageError(errno.EIO, f"{type(exc).__name__}: {text}", where)


# --------------------------------------------------------------------------------------------------
# a remote file system and its listing


class Remote:
    """One fsspec file system (protocol + storage options) and what has been listed of it.

    `list_tree(key)` lists everything below a prefix at once; folders inside a listed prefix are
    answered from memory, any other folder by one `ls` (cached). `refresh` forgets a prefix so
    the next question lists it again (each `--watch` poll). Pickled without the listing (workers
    ask again for what they need).
    """

    def __init__(self, protocol: str, options: Mapping[str, Any] | None = None) -> None:
        self.protocol = protocol
        self.options = dict(options or {})
        self._fs: Any = None
        self._dirs: dict[str, _Dir | None] = {}  # folder key -> contents (None: not a folder)
        self._trees: set[str] = set()  # prefixes listed recursively
        self._files: dict[str, FileStat] = {}  # single objects listed by their own key
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["protocol"], state["options"])  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = _filesystem(self.protocol, self.options)
        return self._fs

    def url(self, key: str) -> str:
        return f"{self.protocol}://{key.lstrip('/')}"

    # listing ---------------------------------------------------------------------------------

    def list_tree(self, key: str) -> None:
        """List every object below `key` (one recursive listing); raises OSError (one line).

        `key` itself may be a file (then only it is known) or nothing (then it is known not to be)."""
        try:
            self.fs.invalidate_cache(key)  # fsspec's own listing cache would answer with old sizes
            found = self.fs.find(key, detail=True, withdirs=True)
        except Exception as exc:  # noqa: BLE001 - any backend error becomes one OSError line
            raise _oserror(exc, self.url(key)) from None
        tree: dict[str, _Dir | None] = {}
        root = key.rstrip("/") or key
        single: FileStat | None = None
        for name, info in found.items():
            name = name.rstrip("/")
            if name == root:
                if info.get("type") != "directory":
                    single = _stat_of(info)
                continue
            if not name.startswith(root + "/"):
                continue
            rel = name[len(root) + 1 :].split("/")
            d = root
            for part in rel[:-1]:
                tree.setdefault(d, _Dir()).dirs.add(part)  # type: ignore[union-attr]
                d = f"{d}/{part}"
                tree.setdefault(d, _Dir())
            node = tree.setdefault(d, _Dir())
            assert node is not None
            if info.get("type") == "directory":
                node.dirs.add(rel[-1])
                tree.setdefault(f"{d}/{rel[-1]}", _Dir())
            else:
                node.files[rel[-1]] = _stat_of(info)
        with self._lock:
            self._forget(root)
            self._dirs.update(tree)
            if tree:
                self._trees.add(root)
            else:
                self._dirs[root] = None
            if single is not None:
                self._files[root] = single

    def _forget(self, root: str) -> None:
        for k in [k for k in self._dirs if k == root or k.startswith(root + "/")]:
            del self._dirs[k]
        for k in [k for k in self._files if k == root or k.startswith(root + "/")]:
            del self._files[k]
        self._trees = {t for t in self._trees if not (t == root or t.startswith(root + "/"))}

    def known(self, key: str) -> bool:
        """Whether `key` was listed (as a file, a folder, or as nothing)."""
        return key in self._files or key in self._dirs or self._in_tree(key)

    def refresh(self, key: str) -> None:
        """Forget what was listed at and below `key`."""
        with self._lock:
            self._forget(key.rstrip("/") or key)
        if self._fs is not None:
            try:
                self._fs.invalidate_cache(key)
            except Exception:  # noqa: BLE001 - a file system without a listing cache
                pass

    def _in_tree(self, key: str) -> bool:
        return any(key == t or key.startswith(t + "/") for t in self._trees)

    def folder(self, key: str) -> _Dir | None:
        """Contents of the folder `key`, or None when there is no such folder; raises OSError."""
        key = key.rstrip("/") or key
        if key in self._dirs:
            return self._dirs[key]
        if self._in_tree(key):
            return None  # inside a listed prefix and not seen: not a folder
        parent, _, base = key.rpartition("/")
        if parent and parent.strip("/"):
            # ask the parent first (listed once, then cached): probes for folders that are not there
            # (a run's sibling checkpoint folders) cost one request per parent, not one per run
            try:
                above = self.folder(parent)
            except OSError:
                above = _Dir(dirs={base})  # the parent cannot be listed (a prefix-only grant): ask `key`
            if above is None or base not in above.dirs:
                with self._lock:
                    self._dirs[key] = None
                return None
        try:
            entries = self.fs.ls(key, detail=True)
        except FileNotFoundError:
            entries = []
        except Exception as exc:  # noqa: BLE001
            raise _oserror(exc, self.url(key)) from None
        d: _Dir | None = _Dir()
        assert d is not None
        for info in entries:
            name = str(info.get("name", "")).rstrip("/")
            if name == key and info.get("type") != "directory":
                d = None  # `ls` of a file answers the file itself
                break
            base = name.rpartition("/")[2]
            if not base:
                continue
            if info.get("type") == "directory":
                d.dirs.add(base)
            else:
                d.files[base] = _stat_of(info)
        if d is not None and not d.files and not d.dirs:
            d = None  # an object store has no empty folders: nothing there
        with self._lock:
            self._dirs[key] = d
        return d

    def stat(self, key: str) -> FileStat:
        if key in self._files:
            return self._files[key]
        parent, _, base = key.rstrip("/").rpartition("/")
        d = self.folder(parent) if parent else None
        if d is not None and base in d.files:
            return d.files[base]
        raise StorageError(errno.ENOENT, "no such file", self.url(key))

    # reading ---------------------------------------------------------------------------------

    def cat(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        try:
            data = self.fs.cat_file(key, start=start, end=end)
        except Exception as exc:  # noqa: BLE001
            raise _oserror(exc, self.url(key)) from None
        return bytes(data)


def _filesystem(protocol: str, options: Mapping[str, Any]) -> Any:
    try:
        import fsspec
    except ImportError:
        raise StorageError(errno.ENOSYS, f"reading {protocol}:// URLs needs fsspec: {INSTALL_HINT}") from None
    try:
        return fsspec.filesystem(protocol, **options)
    except ImportError as exc:
        raise StorageError(
            errno.ENOSYS, f"reading {protocol}:// URLs needs a library fsspec names ({exc}): {INSTALL_HINT}"
        ) from None
    except ValueError as exc:
        raise StorageError(errno.EINVAL, f"unknown storage protocol {protocol!r} ({exc})") from None
    except TypeError as exc:
        raise StorageError(errno.EINVAL, f"storage options not accepted by {protocol}:// ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - e.g. credentials that cannot be parsed
        raise _oserror(exc, f"{protocol}://") from None


# --------------------------------------------------------------------------------------------------
# RemotePath


class _Stat:
    """The fields of os.stat_result the readers look at."""

    def __init__(self, fs: FileStat | None) -> None:
        self.st_size = fs.size if fs else 0
        self.st_mtime_ns = (fs.mtime_ns or 0) if fs else 0
        self.st_mtime = self.st_mtime_ns / 1e9
        self.st_mode = stat_mod.S_IFREG | 0o444 if fs else stat_mod.S_IFDIR | 0o555
        self.st_ino = 0
        self.st_dev = 0


class RemotePath:
    """A file or folder in a remote file system, with the part of `pathlib.Path` the readers use.

    Immutable; equal paths have equal URLs. `str()` is the URL (what reports show). There is no
    `__fspath__`: handing one to `open()` or `os.stat()` fails loudly instead of looking for a
    local file named like the URL.
    """

    __slots__ = ("key", "remote")

    def __init__(self, remote: Remote, key: str) -> None:
        self.remote = remote
        key = re.sub(r"/{2,}", "/", key)
        self.key = key.rstrip("/") or key

    # pure path ---------------------------------------------------------------------------------

    def __str__(self) -> str:
        return self.remote.url(self.key)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(("RemotePath", str(self)))

    def __lt__(self, other: RemotePath) -> bool:
        return str(self) < str(other)

    def __truediv__(self, other: str | PurePath) -> RemotePath:
        rel = str(other).replace("\\", "/").strip("/")
        return RemotePath(self.remote, f"{self.key}/{rel}" if rel else self.key)

    def joinpath(self, *others: str | PurePath) -> RemotePath:
        out = self
        for o in others:
            out = out / o
        return out

    @property
    def _lead(self) -> str:
        return "/" if self.key.startswith("/") else ""

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.key.split("/") if p)

    @property
    def name(self) -> str:
        parts = self.parts
        return parts[-1] if len(parts) > 1 else ""  # the bucket itself has no name, like "/"

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem if self.name else ""

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix if self.name else ""

    @property
    def suffixes(self) -> list[str]:
        return PurePosixPath(self.name).suffixes if self.name else []

    @property
    def parent(self) -> RemotePath:
        parts = self.parts
        if len(parts) <= 1:
            return self
        return RemotePath(self.remote, self._lead + "/".join(parts[:-1]))

    @property
    def parents(self) -> tuple[RemotePath, ...]:
        parts = self.parts
        return tuple(
            RemotePath(self.remote, self._lead + "/".join(parts[:k])) for k in range(len(parts) - 1, 0, -1)
        )

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> RemotePath:
        return self.parent / PurePosixPath(self.name).with_suffix(suffix).name

    def as_posix(self) -> str:
        return str(self)

    def as_uri(self) -> str:
        return str(self)

    def is_absolute(self) -> bool:
        return True

    def relative_to(self, other: RemotePath | str) -> PurePosixPath:
        base = other.parts if isinstance(other, RemotePath) else tuple(p for p in str(other).split("/") if p)
        if isinstance(other, RemotePath) and other.remote.protocol != self.remote.protocol:
            raise ValueError(f"{self} is not in {other}")
        if self.parts[: len(base)] != base:
            raise ValueError(f"{self} is not in {other}")
        return PurePosixPath(*self.parts[len(base) :]) if len(self.parts) > len(base) else PurePosixPath(".")

    def is_relative_to(self, other: RemotePath) -> bool:
        try:
            self.relative_to(other)
        except ValueError:
            return False
        return True

    def resolve(self, strict: bool = False) -> RemotePath:
        return self

    def absolute(self) -> RemotePath:
        return self

    def expanduser(self) -> RemotePath:
        return self

    # file system -------------------------------------------------------------------------------

    def is_dir(self) -> bool:
        return self.remote.folder(self.key) is not None

    def is_file(self) -> bool:
        r = self.remote
        if self.key in r._files:
            return True
        if self.key in r._trees:
            return False  # a listed prefix: a folder
        parent = self.parent
        if parent.key == self.key:
            return False  # the bucket itself
        d = r.folder(parent.key)
        return d is not None and self.name in d.files

    def is_symlink(self) -> bool:
        return False

    def exists(self) -> bool:
        """Lists the prefix first when nothing is known of it (not its parent: a user may be allowed
        to list only their prefix); OSError when the store refuses or cannot be reached."""
        if not self.remote.known(self.key):
            self.remote.list_tree(self.key)
        return self.is_file() or self.is_dir()

    def file_stat(self) -> FileStat:
        return self.remote.stat(self.key)

    def stat(self) -> _Stat:
        if self.is_file():
            return _Stat(self.file_stat())
        if self.is_dir():
            return _Stat(None)
        raise StorageError(errno.ENOENT, "no such file or folder", str(self))

    def iterdir(self) -> Iterator[RemotePath]:
        d = self.remote.folder(self.key)
        if d is None:
            raise StorageError(errno.ENOTDIR, "not a folder", str(self))
        for name in sorted(d.dirs | set(d.files)):
            yield self / name

    def read_bytes(self) -> bytes:
        return self.remote.cat(self.key)

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        return self.read_bytes().decode(encoding or "utf-8", errors or "strict")

    def scan(self) -> tuple[list[str], list[str]]:
        """(file names, folder names), sorted, hidden ones left out; OSError when it cannot be listed."""
        d = self.remote.folder(self.key)
        if d is None:
            return [], []
        files = sorted(n for n in d.files if not n.startswith("."))
        dirs = sorted(n for n in d.dirs if not n.startswith(".") and n not in d.files)
        return files, dirs

    def list_tree(self) -> None:
        """List everything below this prefix at once (discovery then needs no further request)."""
        self.remote.list_tree(self.key)

    def ensure_listed(self) -> None:
        """`list_tree` unless this prefix was listed since the last `refresh`."""
        if not self.remote.known(self.key):
            self.remote.list_tree(self.key)

    def refresh(self) -> None:
        self.remote.refresh(self.key)


# --------------------------------------------------------------------------------------------------
# entry points for the readers


def remote_path(url: str, options: Mapping[str, Any] | None = None) -> RemotePath:
    """A RemotePath for `url` (`s3://bucket/prefix`); the file system is created on first use."""
    m = _URL.match(url)
    if not m:
        raise ValueError(f"not a URL: {url!r}")
    protocol = m.group(1).lower()
    rest = url[m.end() :]
    remote = Remote(protocol, options)  # its own listing: a later call lists the bucket afresh
    try:
        key = remote.fs._strip_protocol(url)  # the file system's own spelling (memory:// keys start with /)
    except StorageError:
        raise
    except Exception:  # noqa: BLE001
        key = rest
    return RemotePath(remote, str(key))


def as_path(p: str | os.PathLike[str] | RemotePath, options: Mapping[str, Any] | None = None) -> Path:
    """A local path, or a RemotePath for a URL (typed as Path for the readers: module doc).

    `file://` URLs are local paths. Raises StorageError when the URL's file system is unusable."""
    if isinstance(p, RemotePath):
        return cast(Path, p)
    text = os.fspath(p) if not isinstance(p, str) else p
    if is_url(text):
        return cast(Path, remote_path(text, options))
    if text.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(text).path))
    return Path(text)


def stat(path: str | os.PathLike[str] | RemotePath) -> FileStat:
    """Size, mtime and (remote) ETag or (local) inode of a file; raises OSError."""
    if isinstance(path, RemotePath):
        return path.file_stat()
    st = os.stat(path)
    return FileStat(st.st_size, st.st_mtime_ns, None, (st.st_dev, st.st_ino))


def read_bytes(path: str | os.PathLike[str] | RemotePath) -> bytes:
    """A whole file (CSV, config, W&B record log); raises OSError."""
    if isinstance(path, RemotePath):
        return path.read_bytes()
    with open(path, "rb") as fh:
        return fh.read()


def read_range(path: str | os.PathLike[str] | RemotePath, start: int, end: int | None = None) -> bytes:
    """Bytes [start, end) of a file (end None: to its end); fewer when the file is shorter."""
    if isinstance(path, RemotePath):
        return path.remote.cat(path.key, start, end)
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read() if end is None else fh.read(max(0, end - start))


def iter_blocks(path: RemotePath, size: int | None = None, block: int | None = None) -> Iterator[bytes]:
    """A remote file in blocks of `block` (default BLOCK) bytes, in order (one ranged request each)."""
    block = block or BLOCK
    total = path.file_stat().size if size is None else size
    for start in range(0, total, block):
        data = path.remote.cat(path.key, start, min(start + block, total))
        if not data:
            return
        yield data
