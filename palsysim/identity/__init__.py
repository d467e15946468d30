"""Identity: face recognizers (ArcFace, dlib) and the pass rule of the privacy gate."""
