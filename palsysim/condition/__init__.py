"""Condition images: Canny edges, the face crop (PF), the patient's organs on the donor's layout (CODC), and
conditions over a video's frames."""
