"""What a face recognizer gives the privacy gate and the measures: features of faces, a score between
two faces in its own unit, and its same-person decision. ArcFace (arcface.py) and dlib (dlib_face.py)
implement it; a new recognizer is one more subclass and one more entry in check.RECOGNIZERS.

Shapes: N and M faces, D feature dimensions."""
import numpy as np


class Recognizer:
    name = ""              # the key of its results in check() rows, JSON and reports: "arcface", "dlib"
    label = ""             # how reports name it: "ArcFace", "dlib"
    unit = ""              # what a score is: "similarity" or "distance"
    higher_is_alike = True  # a similarity grows as faces grow alike, a distance shrinks
    threshold = 0.0        # the same-person decision, in `unit`
    threshold_range = (0.0, 0.0)
    threshold_source = ""  # where the decision comes from, for reports
    report_columns = []     # check.report's columns for it, filled by report_cells(check row)

    def features(self, images, what="image", landmarks=None):
        """list of photos -> (N, D) features; an InputError names a photo whose face cannot be used."""
        raise NotImplementedError

    def scores(self, a, b):
        """(N, D), (M, D) features -> (N, M) scores in `unit`."""
        raise NotImplementedError

    def report_cells(self, m):
        """check()'s result for one image -> the cells under report_columns."""
        raise NotImplementedError

    def closeness(self, scores):
        """Scores -> closeness, higher = more alike, whatever the unit."""
        return np.asarray(scores) if self.higher_is_alike else -np.asarray(scores)

    def dissimilarity(self, scores):
        """Scores -> 0 for one face, growing as faces differ: 1 - similarity, or the distance itself."""
        return 1.0 - np.asarray(scores) if self.higher_is_alike else np.asarray(scores)

    def same_person(self, score, threshold=None):
        """(...) scores -> (...) bool: the recognizer takes the two faces for one person (at or past the threshold)."""
        t = self.threshold if threshold is None else threshold
        score = np.asarray(score)
        return score >= t if self.higher_is_alike else score < t

    def pass_rule(self, threshold=None, digits=3, words=False):
        """The privacy gate's rule: an image passes below the same-person decision ("ArcFace similarity < 0.280";
        words: "ArcFace similarity below 0.280", as a saved image's stamp may hold no '<')."""
        t = self.threshold if threshold is None else threshold
        op = ("below", "at or above") if words else ("<", ">=")
        return f"{self.label} {self.unit} {op[0] if self.higher_is_alike else op[1]} {t:.{digits}f}"
