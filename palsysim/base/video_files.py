"""Expression videos in and out: a video file or a folder of frames -> RGB frames; frames -> H.264 mp4 or VP9 webm.

Decoding and encoding go through PyAV (FFmpeg), which ComfyUI itself requires for its video nodes.
What is written holds pixels and the codec's own settings only: no title, comment, date or source file
name, so a saved video names no patient whatever the input file was called.
"""
import hashlib
import math
import os
import re

import numpy as np

from .errors import InputError
from .files import write_atomically
from .layout import PHOTO_EXTS, VIDEO_EXTS, is_photo, is_video
from .photos import MAX_PIXELS, read_image, refuse_unreadable, to_rgb_uint8

CODECS = {".mp4": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
          ".webm": ("libvpx-vp9", "yuv420p", {"crf": "30", "b": "0"})}
MAX_FRAMES = 3000  # 100 s at 30 fps: a Yanagihara item takes a few seconds
FOLDER_FPS = 30.0  # a folder of frames has no rate of its own


def _natural(name):
    """Sort key putting frame_2 before frame_10."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def frame_files(folder):
    """The photos of a folder of frames, in natural order; refused when it holds none."""
    names = sorted((f for f in os.listdir(folder) if is_photo(f)),
                   key=_natural)
    if not names:
        raise InputError(f"{folder} holds no frames ({', '.join(PHOTO_EXTS)}): put the expression's frames there, "
                         f"named in order (frame_001.png, frame_002.png, ...)")
    return [os.path.join(folder, n) for n in names]


def read_video(path, max_frames=MAX_FRAMES):
    """A video file or a folder of frames -> (frames: list of (H, W, 3) uint8 RGB of one size, fps: float).

    A folder's frames are read with the one photo reader (EXIF orientation applied) at FOLDER_FPS.
    """
    if os.path.isdir(path):
        files = frame_files(path)
        if len(files) > max_frames:
            raise InputError(f"{path} holds {len(files)} frames, over the {max_frames} a video may have here: "
                             f"give a shorter clip")
        frames = [read_image(f) for f in files]
        sizes = {f.shape[:2] for f in frames}
        if len(sizes) > 1:
            raise InputError(f"the frames in {path} have {len(sizes)} sizes: give frames of one size")
        return frames, FOLDER_FPS
    _refuse_not_a_video_file(path)
    return _decode(path, max_frames)


def check_video(path):
    """Refuse a video file exactly as read_video would, keeping no frame: the check of every input before any
    work, where holding each video's frames until its turn could take gigabytes (MAX_FRAMES frames each).

    Every frame is decoded (a damaged stream is found), none converted to RGB: about half read_video's time."""
    _refuse_not_a_video_file(path)
    _decode(path, MAX_FRAMES, keep=False)


def refuse_unreadable_media(paths):
    """Every photo read and every video checked (check_video) before any work: photos.refuse_unreadable's one
    message for the photos, then one for the videos."""
    refuse_unreadable([p for p in paths if not is_video(p)])
    refuse_unreadable([p for p in paths if is_video(p)], check_video, "video")


def _refuse_not_a_video_file(path):
    if not os.path.isfile(path):
        raise InputError(f"no such video file or folder of frames: {path}")
    if not path.lower().endswith(VIDEO_EXTS):
        raise InputError(f"{path} is not a video ({', '.join(VIDEO_EXTS)}) or a folder of frames")


def _decode(path, max_frames, keep=True):
    """The one video decoder -> (frames, fps); keep=False: (frames decoded, unconverted and dropped, fps)."""
    import av
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise InputError(f"{path} holds no video stream: give a video of the expression")
            stream = container.streams.video[0]
            if stream.width * stream.height > MAX_PIXELS:
                raise InputError(f"{path} is {stream.width}x{stream.height}, over the {MAX_PIXELS:,} pixels a frame "
                                 f"may have here: downscale it")
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else FOLDER_FPS
            frames = []
            for frame in container.decode(stream):
                if len(frames) == max_frames:
                    raise InputError(f"{path} has more than {max_frames} frames, the most a video may have here: "
                                     f"give a shorter clip")
                frames.append(frame.to_ndarray(format="rgb24") if keep else None)
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"{path} is not a readable video ({type(e).__name__}): give an mp4, webm or mov file") from None
    if not frames:
        raise InputError(f"{path} holds no frames: give a video of the expression")
    return frames, fps


def frames_digest(frames, fps=None):
    """A sha256 hex digest of decoded pixels: frames (list of (H, W, 3) uint8, one size), with the rate, count and
    size, so that the same pixels shown otherwise differ. Not of the file's bytes, which change with the encoder
    and its version. The runner names a video's upload by it (its first 24 digits), which a rerun's manifest
    compares: its format stays as it is."""
    h = hashlib.sha256(f"{fps!r} {len(frames)} {frames[0].shape}".encode())
    for f in frames:
        h.update(f.tobytes())
    return h.hexdigest()


def write_video(path, frames, fps):
    """frames: list of (H, W, 3) uint8 of one size -> an H.264 .mp4 or VP9 .webm at path, whole or not at all.

    Odd sizes are padded by one edge pixel (4:2:0 chroma needs even sides). Returns path.
    """
    ext = os.path.splitext(path)[1].lower()
    encode = _encoder(frames, fps, ext, path)
    write_atomically(path, encode)
    return path


def video_bytes(frames, fps, ext=".mp4"):
    """write_video's file as bytes, made in memory: no file of the frames is ever on disk (the runner's
    uploads of a patient's video)."""
    import io
    buf = io.BytesIO()
    _encoder(frames, fps, ext, f"frames{ext}")(buf)
    return buf.getvalue()


def _encoder(frames, fps, ext, what):
    """Check the frames and the rate -> write(target), which encodes them to a path or a file object."""
    import av
    if ext not in CODECS:
        raise InputError(f"{what}: a video is written as {' or '.join(CODECS)}")
    if not frames:
        raise InputError("no frames to write: the video would be empty")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 240):
        raise InputError(f"fps={fps!r}: give a frame rate from 1 to 240")
    rgbs = [to_rgb_uint8(f, f"frame {i + 1}") for i, f in enumerate(frames)]
    h, w = rgbs[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in rgbs):
        raise InputError("the frames have different sizes: a video needs frames of one size")
    codec, pix_fmt, options = CODECS[ext]
    rate = _rate(fps)

    def write(target):
        # bitexact: FFmpeg writes no "Lavf..." encoder tag; the container gets no metadata at all.
        with av.open(target, "w", format=ext[1:], container_options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream(codec, rate=rate, options=options)
            stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, pix_fmt
            for rgb in rgbs:
                even = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                out.mux(stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")))
            out.mux(stream.encode())
    return write


def _rate(fps):
    """fps -> a Fraction PyAV takes as a stream rate (29.97 -> 30000/1001)."""
    from fractions import Fraction
    return Fraction(fps).limit_denominator(1001)
