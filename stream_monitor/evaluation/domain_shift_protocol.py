"""The fixed protocol of the domain-shift measurements (evaluation/domain_shift.py), shared with its
report (domain_shift_report.py) so that neither imports the other. Fixed before any footage was scored."""

__all__ = ["CVC_DEV", "DRIFT_ARL0", "DRIFT_P1", "ENROLL_FOLDS", "ID_STREAMS", "TARGET_TPR"]

TARGET_TPR = 0.95
DRIFT_P1 = 0.25
DRIFT_ARL0 = 8 * 3600  # decisions at one a second
ID_STREAMS = 200       # simulated one-hour in-domain streams per method
CVC_DEV = tuple(f"seq0{i}" for i in range(1, 8))
# Positions in the sorted list of the 12 PolypGen sequences: (fit, threshold hold-back, evaluate).
ENROLL_FOLDS = {
    "A": ((1, 5, 7, 11), (3, 9), (0, 2, 4, 6, 8, 10)),
    "B": ((0, 4, 6, 10), (2, 8), (1, 3, 5, 7, 9, 11)),
}
