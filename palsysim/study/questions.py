"""What raters and trainees are asked: the three rating criteria and the Yanagihara items."""
from ..fidelity import ITEMS

# The rating criteria in the order a rater meets them. Naturalness comes first and alone, so the
# patient's photo has not been seen when realism is judged; the other two need the photo beside.
CRITERIA = {
    "naturalness": {
        "title": "Naturalness",
        "question": "How natural and realistic does the face in the generated image look?",
        "low": "clearly artificial", "high": "indistinguishable from a real photograph",
        "with_source": False,
    },
    "expression_accuracy": {
        "title": "Expression accuracy",
        "question": "How accurately does the generated image reproduce the patient's facial expression, "
                    "including the palsy (compare with the patient's photo)?",
        "low": "not at all", "high": "exactly",
        "with_source": True,
    },
    "identity_difference": {
        "title": "Identity difference",
        "question": "How different is the person in the generated image from the patient in the photo?",
        "low": "the same person", "high": "clearly a different person",
        "with_source": True,
    },
}
SCALE = (1, 2, 3, 4, 5)

# The Yanagihara (40-point) grading system: each item 0, 2 or 4, so ten items give 0..40.
YANAGIHARA = "yanagihara"
ITEM_TITLES = {
    "rest": "At rest", "raise_eyebrows": "Wrinkle forehead (raise the eyebrows)", "blink": "Blink",
    "gentle_eye_closure": "Closure of the eye, gently", "tight_eye_closure": "Closure of the eye, tightly",
    "wink": "Closure of the eye on the involved side only (wink)", "nose_wrinkle": "Wrinkle the nose",
    "whistle": "Whistle (purse the lips)", "grin": "Grin (show the teeth)",
    "lower_lip_depression": "Depress the lower lip",
}
assert tuple(ITEM_TITLES) == ITEMS
SCORES = (0, 2, 4)
SCORE_WORDS = {0: "no movement (complete palsy)", 2: "partial movement", 4: "normal, symmetric movement"}
