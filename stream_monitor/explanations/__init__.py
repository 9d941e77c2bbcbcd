"""Explanations of an alert a person can check: maps over the image (`maps`, `patch`), the neurons the
score rests on with training-image thumbnails (`neurons`), the artifact that carries them beside the
detector (`assets`), and what an alert's audit record keeps (`record`)."""
