"""What a study shows, copied into its own folder: a photo as a metadata-free PNG, a video as a metadata-free
H.264 mp4 and a VP9 webm of the same frames (browsers without H.264, such as some open-source builds, play
the webm), each named by the item's opaque id. A patient's photo or video is shown as its 512 face crop."""
import os

from ..base.errors import InputError
from ..base.layout import is_video
from ..base.photos import read_image, write_image
from ..base.video_files import frames_digest, read_video, write_video
from ..condition.facecrop import face_crop
from ..face.landmarks import face_landmarks
from .folders import IMAGES

SOURCE_SIZE = 512  # the face crop's side, as in training and generation
# What each media kind is stored as: extension -> the Content-Type it is served with. A browser takes the first
# <source> it can play, so the mp4 (tablets' Safari plays only it) comes first.
FILES = {"image": {".png": "image/png"}, "video": {".mp4": "video/mp4", ".webm": "video/webm"}}


def media_of(path):
    return "video" if is_video(path) else "image"


def digest(path):
    """A hash of what the item shows (decoded pixels, not the file's bytes, nor a video's rate): two methods'
    identical outputs."""
    return frames_digest(read_video(path)[0] if media_of(path) == "video" else [read_image(path)])


def source_face(path, patient_id, source):
    """A patient's photo as raters compare it: the same 512 face crop the generated faces were made from
    (facecrop.face_crop), not the whole photo at another scale."""
    return _crop(read_image(path), [], f"patient {patient_id}'s {source} photo")[0]


def _crop(first, frames, what):
    """The face crop of `first` (the photo, or a video's first frame), and `frames` in that same square: the
    face moves inside a still crop, as in the video conditions generation started from."""
    try:
        xy = face_landmarks(first, what=what).xy
    except InputError as ex:
        raise InputError(f"{ex}; the study shows each patient photo and video as its face crop, beside the "
                         "generated face") from None
    return face_crop(first, xy, SOURCE_SIZE)[0], [face_crop(f, xy, SOURCE_SIZE)[0] for f in frames]


def copy_in(folder, image_id, path, kind, patient_id, source):
    """Write the study's copies of one photo or video under image_id; returns its media ("image" or "video").

    Pixels only, re-encoded: a runner PNG's text chunks carry the workflow, which names the patient's file, and a
    video's tags can carry names and dates."""
    media = media_of(path)
    base = os.path.join(folder, IMAGES, image_id)
    if media == "image":
        write_image(base + ".png", source_face(path, patient_id, source) if kind == "source" else read_image(path))
        return media
    frames, fps = read_video(path)
    if kind == "source":
        frames = _crop(frames[0], frames, f"the first frame of patient {patient_id}'s {source} video")[1]
    for ext in FILES["video"]:
        write_video(base + ext, frames, fps)
    return media
