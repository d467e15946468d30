"""MediaPipe Face Mesh (478-point) index sets for the regions PalsySim works with.

Sides are the subject's own, as a clinician names them: "right" is the subject's right side, which
is on the image's left in a frontal, unmirrored photograph (landmark 33 is its outer eye corner).
"""

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

# Upper lid runs from the outer to the inner corner over the top; lower lid likewise underneath.
EYE_UPPER = {"right": (33, 246, 161, 160, 159, 158, 157, 173, 133),
             "left": (263, 466, 388, 387, 386, 385, 384, 398, 362)}
EYE_LOWER = {"right": (33, 7, 163, 144, 145, 153, 154, 155, 133),
             "left": (263, 249, 390, 373, 374, 380, 381, 382, 362)}
BROW_UPPER = {"right": (70, 63, 105, 66, 107), "left": (300, 293, 334, 296, 336)}
BROW_LOWER = {"right": (46, 53, 52, 65, 55), "left": (276, 283, 282, 295, 285)}
IRIS = {"right": (468, 469, 470, 471, 472), "left": (473, 474, 475, 476, 477)}
PUPIL = {"right": 468, "left": 473}
LID_MID = {"right": (159, 145), "left": (386, 374)}  # (upper, lower) at the pupil

LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291,
              409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
              415, 310, 311, 312, 13, 82, 81, 80, 191)
MOUTH_CORNER = {"right": 61, "left": 291}
LOWER_LIP_MID = 17  # lowest point of the lower vermilion on the midline
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 129, 358, 64, 294,
        48, 278, 49, 279, 102, 331, 219, 439, 240, 460)
MIDLINE = (10, 168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 0, 13, 14, 17, 152)

SIDES = ("right", "left")


def eye_region(side):
    """Indices of one eye with its brow: lids, iris and brow."""
    return EYE_UPPER[side] + EYE_LOWER[side] + IRIS[side] + BROW_UPPER[side] + BROW_LOWER[side]


ORGANS = {
    "right_eye": eye_region("right"),
    "left_eye": eye_region("left"),
    "nose": NOSE,
    "mouth": LIPS_OUTER + LIPS_INNER,
}
