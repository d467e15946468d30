"""Files written whole or not at all."""
import hashlib
import os
import tempfile


def write_atomically(path, write, keep_previous=None):
    """Call write(tmp_path), fsync, rename onto path, fsync the folder: a crash leaves the old file or the new.

    keep_previous: a path the old file is renamed to first (a crash between the two renames leaves
    only that one, for a reader to fall back to).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if keep_previous and os.path.exists(path):
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)  # the rename itself survives a power cut only once the folder is synced
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_bytes(path, data):
    """bytes, or str as UTF-8 -> the file at path, whole or not at all; returns path."""
    data = data.encode("utf-8") if isinstance(data, str) else data

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    write_atomically(path, write)
    return path


def sha256_of(path, _seen={}):
    """The sha256 hex digest of a file's bytes, read once per process while its size and mtime stay the
    same (a 4 GB checkpoint is hashed once, however many stages ask)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _seen:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _seen[key] = h.hexdigest()
    return _seen[key]
