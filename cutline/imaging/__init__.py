"""Pixels: decoding, the model session and its store, confidence, refinement, renditions, XMP, contact sheets, sample images."""
