"""What raters and trainees are asked: the three rating criteria (the Yanagihara items are base.vocabulary's)."""

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

# The study kind that scores the Yanagihara items (a trainer) rather than rating images.
YANAGIHARA = "yanagihara"
