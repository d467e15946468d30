"""Run by ComfyUI-Manager (and `comfy node install`) after it installs requirements.txt, with ComfyUI's
Python, in this folder: with a mediapipe that has no legacy Face Mesh API (>= 0.10.30, the only kind that
installs on Python 3.13), fetches face_landmarker.task into ComfyUI's models/mediapipe/, checked, unless a
models folder already holds it. PALSYSIM_NO_DOWNLOAD=1 forbids the download. Offline or forbidden, it
prints one line naming the file, its URL and the folder, and exits 0: a skipped optional fetch never
fails the pack's install. ComfyUI itself never imports this file.
"""
import os
import sys

NO_DOWNLOAD = "PALSYSIM_NO_DOWNLOAD"


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from palsysim.base.errors import InputError
    from palsysim.base.model_files import by_key, find_model, model_dirs
    from palsysim.base.paths import comfyui_dir
    from palsysim.face.landmarks import TASK_FILE, has_legacy_api
    model = by_key(TASK_FILE)
    try:
        if has_legacy_api():
            return  # mediapipe <= 0.10.21 carries its face model in the wheel
    except ImportError:
        print(f"PalsySim: mediapipe is not installed, so {TASK_FILE} was not fetched")
        return
    try:  # the Manager names its ComfyUI (COMFYUI_PATH) and the base of its models/ (COMFYUI_FOLDERS_BASE_PATH)
        os.environ["COMFYUI_DIR"] = comfyui_dir(os.environ.get("COMFYUI_PATH"))
    except InputError as e:
        print(f"PalsySim: {TASK_FILE} was not fetched: {e}; download {model.url} into your ComfyUI's "
              f"models{os.sep}mediapipe{os.sep}")
        return
    if os.environ.get("COMFYUI_FOLDERS_BASE_PATH"):
        os.environ["MODELS_DIR"] = os.path.join(os.environ["COMFYUI_FOLDERS_BASE_PATH"], "models")
    found = find_model("mediapipe", TASK_FILE)
    if found:
        print(f"PalsySim: {TASK_FILE} found at {found}")
        return
    models_dir = model_dirs()[0]
    folder = os.path.join(models_dir, "mediapipe")
    mirror = os.environ.get("PALSYSIM_MODEL_MIRROR")  # as for `models --fetch`: an institution's own copy
    url = f"{mirror.rstrip('/')}/{model.key}" if mirror else model.url
    why = f"{NO_DOWNLOAD} is set" if os.environ.get(NO_DOWNLOAD, "") not in ("", "0") else None
    if why is None:
        try:
            from palsysim.models.fetch import fetch
            path = fetch(model, models_dir, url=url, progress=False)
            print(f"PalsySim: {TASK_FILE} (for mediapipe without the legacy API) installed at {path} from {url}")
            return
        except Exception as e:  # no network, refused, cut short (kept for the next run), a broken bundle (deleted)
            why = str(e)
    print(f"PalsySim: {TASK_FILE} was not downloaded ({why}): the landmark nodes need it with this mediapipe; "
          f"download {url} into {folder}{os.sep}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # never fail the pack's install over an optional file
        print(f"PalsySim: install.py skipped the face_landmarker.task check ({type(e).__name__}: {e})")
