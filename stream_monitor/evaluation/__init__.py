"""Offline evaluation: NERO against every baseline on real data, with reports and plots."""
