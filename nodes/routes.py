"""The HTTP route the pack adds to the ComfyUI server: the headless runner (palsysim run) deletes
its own uploads when its jobs are done, so patient photos do not stay in the server's input folder.

POST /palsysim/uploads/delete {"run": "<32 hex>", "names": ["<24 hex>.png", ...]} -> {"deleted": [...]}
(a video job's upload is "<24 hex>.mp4"). Only content-hash names, only in input/palsysim/<run>/ (each runner uploads into a folder of its own,
so one that finishes never deletes a photo another runner's queued prompt still needs): the route
can delete nothing else.

As the server starts, the run folders left in input/palsysim/ are deleted (remove_leftover_uploads):
a runner killed mid-run, or one that lost this server, could not delete its photos.
"""
import os
import re
import shutil

import folder_paths
from aiohttp import web

from .comfy_internals import add_post_route

UPLOAD_FOLDER = "palsysim"  # palsysim.comfy.client.UPLOAD_FOLDER, not imported: the nodes never load the HTTP client
CONTENT_NAME = re.compile(r"[0-9a-f]{24}\.(png|mp4)")  # photos, and videos re-encoded (plan.video_mp4)
RUN_ID = re.compile(r"[0-9a-f]{32}")


async def delete_uploads(request):
    try:
        body = await request.json()
        run, names = body["run"], body["names"]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'expected JSON {"run": "<32 hex>", "names": ["<24 hex>.png", ...]}'},
                                 status=400)
    if not isinstance(names, list) or not all(isinstance(n, str) and CONTENT_NAME.fullmatch(n) for n in names):
        return web.json_response({"error": "names must be the runner's content-hash names (24 hex digits + .png or .mp4)"},
                                 status=400)
    if not isinstance(run, str) or not RUN_ID.fullmatch(run):
        return web.json_response({"error": "run must be the runner's id (32 hex digits)"}, status=400)
    folder = os.path.join(folder_paths.get_input_directory(), UPLOAD_FOLDER, run)
    deleted = []
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.remove(path)
            deleted.append(name)
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
    return web.json_response({"deleted": deleted})


def remove_leftover_uploads():
    """Delete every run folder in input/palsysim/. Called as the server starts, when no prompt is queued
    yet, so no runner's job still needs one (a runner that reconnects uploads its photos again)."""
    folder = os.path.join(folder_paths.get_input_directory(), UPLOAD_FOLDER)
    for run in os.listdir(folder) if os.path.isdir(folder) else []:
        if RUN_ID.fullmatch(run):
            shutil.rmtree(os.path.join(folder, run), ignore_errors=True)


def register_routes():
    """Add the route to the server as it starts, and delete the uploads runners left; called from
    comfy_entrypoint, before the server copies its route table into the app. Outside the host (e.g. under
    pytest) there is no server, and no server's input folder to clean."""
    if add_post_route("/palsysim/uploads/delete", delete_uploads):
        remove_leftover_uploads()
