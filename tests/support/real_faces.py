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


def write_expression_video(path, frames=6, width=192, fps=12.0, item="grin", who="grace_hopper", tag=None):
    """An mp4 of `who` (a photo_paths name) going from rest to `item` and back with a left palsy (the landmark
    warp of synth_expression_video), scaled to `width` px wide so a test runs it in seconds; tag: its container
    tagged with it as title and comment (what a camera or an editor may write: names, dates). Returns path."""
    import cv2

    from palsysim.base.photos import read_image
    from palsysim.base.video_files import write_video
    from palsysim.face.landmarks import face_landmarks
    from palsysim.face.synth import synth_expression_video
    photo = read_image(photo_paths()[who])
    height = round(photo.shape[0] * width / photo.shape[1])
    seq = synth_expression_video(photo, face_landmarks(photo), item, frames=frames, side="left", severity=0.6)
    resized = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f, _ in seq]
    if tag is None:
        return write_video(str(path), resized, fps)
    folder, name = os.path.split(str(path))
    plain = write_video(os.path.join(folder, f".{name}.plain.mp4"), resized, fps)  # hidden: no source of a job
    tagged_copy(plain, path, tag)
    os.remove(plain)
    return str(path)


def tagged_copy(source, path, tag):
    """The mp4 `source`'s stream copied, not re-encoded (the same frames decode from it), into an mp4 at path whose
    container is tagged with `tag` as title and comment. Returns path."""
    import av
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4") as dst:
        dst.metadata.update(title=tag, comment=tag)
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return str(path)
