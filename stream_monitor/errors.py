"""Exceptions raised at stream-monitor's public boundaries.

Every error says what was wrong and, where a file is involved, names it, so that an operator can act
on the message alone.
"""


class StreamMonitorError(Exception):
    """Base class of every error stream-monitor raises on purpose."""


class InputError(StreamMonitorError, ValueError):
    """Arrays or arguments a caller passed are unusable (wrong shape, NaN, empty, out of range)."""


class NotFittedError(StreamMonitorError, RuntimeError):
    """A detector was used before `fit` (or `load`)."""


class ArtifactError(StreamMonitorError):
    """A saved detector artifact is missing, corrupt, too new, or does not match the model."""


class CheckpointError(StreamMonitorError, ValueError):
    """A model checkpoint is missing, unreadable, refused as an untrusted pickle, or does not fit the
    model (missing / unexpected keys, wrong shapes, wrong number of classes). The message names the file."""


class WeightsUnavailableError(CheckpointError):
    """Pretrained weights were asked for but none ship with the package for that architecture;
    nothing is downloaded at run time, so the caller must pass a checkpoint file instead."""


class UnsupportedModelError(InputError):
    """A classifier does not fit NERO's contract (a linear head over a pooled (B, D) feature): the named
    layer is missing or not an `nn.Linear`, something runs after it, or its input is not pooled. The
    message says what to pass or change instead."""
