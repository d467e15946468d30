"""What raters and trainees are asked: the three rating criteria (the Yanagihara items are base.vocabulary's),
worded for what is rated, images or videos."""

# The rating criteria in the order a rater meets them. Naturalness comes first and alone, so the
# patient's photo has not been seen when realism is judged; the other two need the photo beside.
# {item} is the generated image or video, {source} the patient's photo or video it is compared with,
# {real} what a real one of the generated kind would be (worded()).
CRITERIA = {
    "naturalness": {
        "title": "Naturalness",
        "question": "How natural and realistic does the face in the generated {item} look?",
        "low": "clearly artificial", "high": "indistinguishable from a real {real}",
        "with_source": False,
    },
    "expression_accuracy": {
        "title": "Expression accuracy",
        "question": "How accurately does the generated {item} reproduce the patient's facial expression, "
                    "including the palsy (compare with the patient's {source})?",
        "low": "not at all", "high": "exactly",
        "with_source": True,
    },
    "identity_difference": {
        "title": "Identity difference",
        "question": "How different is the person in the generated {item} from the patient in the {source}?",
        "low": "the same person", "high": "clearly a different person",
        "with_source": True,
    },
}
SCALE = (1, 2, 3, 4, 5)

# The study kind that scores the Yanagihara items (a trainer) rather than rating images.
YANAGIHARA = "yanagihara"

# What an item is called, by its media (store.py's images.media); a mix of both names both.
WORDS = {
    "image": {"item": "image", "items": "images", "source": "photo", "real": "photograph"},
    "video": {"item": "video", "items": "videos", "source": "video", "real": "video recording"},
    "mixed": {"item": "image or video", "items": "images and videos", "source": "photo or video",
              "real": "photograph or video recording"},
}


def words(media):
    """WORDS of the media of some items (one task's, or a whole study's)."""
    kinds = set(media)
    return WORDS[kinds.pop() if len(kinds) == 1 else "mixed"]


def worded(criterion, media, source_media):
    """CRITERIA[criterion] with its texts worded for generated items of `media` compared with patients' items of
    `source_media` (each an iterable of "image"/"video")."""
    generated, source = words(media), words(source_media)
    fill = {"item": generated["item"], "real": generated["real"], "source": source["source"]}
    return {k: v.format(**fill) if isinstance(v, str) else v for k, v in CRITERIA[criterion].items()}
