"""Explicit downloads of catalog files: resumable, verified, written whole.

A download goes to <target>.partial; an interrupted one is resumed from there with an HTTP Range
request; only a file whose SHA-256 matches the pinned digest is renamed into place, and one that
does not match is deleted. Nothing here runs unless the user asks (`models --fetch`).
"""
import os

from .catalog import sha256_of, target


class FetchError(Exception):
    """A download that did not give the file (digest mismatch, HTTP error); the message says why."""


class Unreachable(FetchError):
    """The source could not be reached at all (no network, DNS, refused)."""


def fetch(model, models_dir, url=None, progress=True, timeout=30, chunk=1 << 20):
    """Download model into models_dir/<folder>/<name> (or torch's hub cache); returns the path.

    url overrides model.url (a mirror). Raises Unreachable when the host cannot be reached,
    FetchError for a refused download or a digest mismatch (the bad file is deleted); a download
    cut short keeps its .partial, which the next call resumes.
    """
    import requests
    from tqdm import tqdm
    final = target(model, models_dir)
    if os.path.isfile(final) and (model.sha256 is None or sha256_of(final) == model.sha256):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    part = final + ".partial"
    url = url or model.url
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
            if r.status_code == 416:  # the .partial already holds every byte
                pass
            elif r.status_code not in (200, 206):
                raise FetchError(f"{model.key}: {url} answered HTTP {r.status_code}")
            else:
                if r.status_code == 200:  # the server ignored Range: start over
                    have = 0
                total = int(r.headers.get("Content-Length", 0)) + have or None
                with open(part, "ab" if have else "wb") as f, \
                        tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=model.key,
                             disable=not progress) as bar:
                    for block in r.iter_content(chunk):
                        f.write(block)
                        bar.update(len(block))
                got = os.path.getsize(part)
                if total and got < total:
                    raise FetchError(f"{model.key}: download cut short at {got} of {total} bytes; "
                                     f"run the same command again to resume")
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
        if os.path.isfile(part) and os.path.getsize(part) > have:
            raise FetchError(f"{model.key}: download interrupted at {os.path.getsize(part)} bytes ({e}); "
                             f"run the same command again to resume") from None
        raise Unreachable(f"{model.key}: cannot reach {url} ({type(e).__name__})") from None
    digest = sha256_of(part)
    if model.sha256 is not None and digest != model.sha256:
        os.remove(part)
        raise FetchError(f"{model.key}: the downloaded file's SHA-256 is {digest}, not the pinned "
                         f"{model.sha256}; it was deleted")
    os.replace(part, final)
    return final


def manual_download_message(models, models_dir):
    """One message for a machine without network: every URL and the folder its file goes in."""
    lines = ["These model files could not be downloaded here. Download them on a machine with network "
             "access and copy each into its folder (then `python -m palsysim models` checks them):"]
    for m in models:
        folder = os.path.dirname(target(m, models_dir))
        digest = m.sha256 or "unverified"
        lines.append(f"  {m.url}\n    -> {folder}{os.sep}  (sha256 {digest})")
    return "\n".join(lines)
