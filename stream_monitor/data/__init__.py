"""Data on disk: image and frame reading (`images`), the committed ID split (`split`) and features of a
data set under a model, cached (`features`). Import the sub-module you need: a capture process needs
only `images` and must not pull in the offline split or torch."""
