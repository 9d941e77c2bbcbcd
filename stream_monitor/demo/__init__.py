"""`stream-monitor demo`: a real ID → OOD → ID clip (`clip`), what a run did as a subscriber saw it
(`summary`, `drift_report`) and the printed summary (`report`)."""
