"""Real face photographs that ship inside installed packages (no downloads), found via __file__."""
import os

from palsysim.demo import sample_photos


def photo_paths():
    """{name: path} of three different people's frontal photos: the demo's two, and Tom Hanks."""
    import insightface

    # a 112x112 crop insightface itself aligned to the ArcFace template
    tom_hanks = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "Tom_Hanks_54745.png")
    return {**sample_photos(), "tom_hanks": tom_hanks}


def photos():
    """{name: (H, W, 3) uint8 RGB} of photo_paths()."""
    from palsysim.base.photos import read_image
    return {k: read_image(p) for k, p in photo_paths().items()}


def write_expression_video(path, frames=6, width=192, fps=12.0, item="grin"):
    """An mp4 of Grace Hopper going from rest to `item` and back with a left palsy (the landmark warp of
    synth_expression_video), scaled to `width` px wide so a test runs it in seconds. Returns path."""
    import cv2

    from palsysim.base.photos import read_image
    from palsysim.base.video_files import write_video
    from palsysim.face.landmarks import face_landmarks
    from palsysim.face.synth import synth_expression_video
    photo = read_image(photo_paths()["grace_hopper"])
    height = round(photo.shape[0] * width / photo.shape[1])
    seq = synth_expression_video(photo, face_landmarks(photo), item, frames=frames, side="left", severity=0.6)
    return write_video(str(path), [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f, _ in seq], fps)
