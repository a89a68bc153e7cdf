"""Measuring cutouts against ground truth: metrics, the evaluation set, the report and calibration."""
