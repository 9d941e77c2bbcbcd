"""stream-monitor: real-time out-of-distribution monitoring of endoscopy video with NERO."""

__version__ = "0.1.0"
