"""Faces: MediaPipe landmarks, named regions, asymmetry measures, synthetic palsy, drawing and temporal smoothing."""
