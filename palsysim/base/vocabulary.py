"""The Yanagihara (40-point) grading system: its ten items, in the order clinicians grade them, and scores.

The item names are the dataset's expression folder names, the runner's and the grid workflow's too."""
ITEM_TITLES = {
    "rest": "At rest", "raise_eyebrows": "Wrinkle forehead (raise the eyebrows)", "blink": "Blink",
    "gentle_eye_closure": "Closure of the eye, gently", "tight_eye_closure": "Closure of the eye, tightly",
    "wink": "Closure of the eye on the involved side only (wink)", "nose_wrinkle": "Wrinkle the nose",
    "whistle": "Whistle (purse the lips)", "grin": "Grin (show the teeth)",
    "lower_lip_depression": "Depress the lower lip",
}
ITEMS = tuple(ITEM_TITLES)
SCORES = (0, 2, 4)  # each item 0, 2 or 4, so ten items give 0..40
SCORE_WORDS = {0: "no movement (complete palsy)", 2: "partial movement", 4: "normal, symmetric movement"}
REST_SCORE_WORDS = {0: "marked asymmetry", 2: "slight asymmetry", 4: "symmetric"}  # the item "at rest" has no movement
