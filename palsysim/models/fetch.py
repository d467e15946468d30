"""Explicit downloads of catalog files: resumable, verified, written whole.

A download goes to <target>.partial; one cut short is resumed from there with an HTTP Range request
(a .partial with no bytes is removed); only a file that passes its checks (the pinned SHA-256, else
its size and format) is renamed into place, and one that does not is deleted. Nothing here runs
unless the user asks (`models --fetch`).
"""
import os

from ..base.model_files import file_problem, target


class FetchError(Exception):
    """A download that did not give the file (refused by its checks, HTTP error, cut short); the message says why."""


class Unreachable(FetchError):
    """The source could not be reached at all (no network, DNS, refused)."""


def fetch(model, models_dir, url=None, progress=True, timeout=30, chunk=1 << 20):
    """Download model into models_dir/<folder>/<name> (or torch's hub cache); returns the path.

    url overrides model.url (a mirror). Raises Unreachable when the host cannot be reached,
    FetchError for a refused download, a file that fails its checks (deleted), or a download cut
    short (its bytes kept in the .partial, which the next call resumes).
    """
    import requests
    final = target(model, models_dir)
    if os.path.isfile(final) and file_problem(model, final) is None:
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    part = final + ".partial"
    url = url or model.url
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    try:
        r = requests.get(url, headers={"Range": f"bytes={have}-"} if have else {}, stream=True, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise Unreachable(f"{model.key}: cannot reach {url} ({type(e).__name__})") from None
    with r:
        if r.status_code not in (200, 206, 416):  # 416: the .partial already holds every byte
            raise FetchError(f"{model.key}: {url} answered HTTP {r.status_code}")
        if r.status_code != 416:  # a 200 to a Range request: the server sends the whole file, start over
            _download(model, r, part, 0 if r.status_code == 200 else have, url, progress, chunk)
    problem = file_problem(model, part)
    if problem:
        os.remove(part)
        raise FetchError(f"{model.key} from {url}: {problem}; it was deleted")
    os.replace(part, final)
    return final


def _download(model, r, part, have, url, progress, chunk):
    """Append r's body to part (from byte `have`; 0 starts over); FetchError when it stops short."""
    import requests
    from tqdm import tqdm
    total = int(r.headers.get("Content-Length", 0)) + have or None
    broken = None
    with open(part, "ab" if have else "wb") as f, \
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=model.key, disable=not progress) as bar:
        try:
            for block in r.iter_content(chunk):
                f.write(block)
                bar.update(len(block))
        except requests.RequestException as e:  # the connection dropped or stalled mid-file
            broken = type(e).__name__
    got = os.path.getsize(part)
    if broken or (total and got < total):
        if not got:
            os.remove(part)
        kept = f"{got:,} bytes kept in {part}" if got else "nothing kept"
        raise FetchError(f"{model.key}: the download from {url} was cut short at {got:,} of "
                         f"{f'{total:,}' if total else 'an unknown number of'} bytes (the connection "
                         f"{f'broke: {broken}' if broken else 'closed early'}; {kept}): run the same command "
                         f"again to resume")


def manual_download_message(models, models_dir):
    """One message for a machine without network: every URL and the folder its file goes in."""
    lines = ["These model files could not be downloaded here. Download them on a machine with network "
             "access and copy each into its folder (then `python -m palsysim models` checks them):"]
    for m in models:
        folder = os.path.dirname(target(m, models_dir))
        digest = m.sha256 or "unverified"
        lines.append(f"  {m.url}\n    -> {folder}{os.sep}  (sha256 {digest})")
    return "\n".join(lines)
