"""Cutline: studio-scale AI background removal orchestrated by Prefect."""

__version__ = "0.1.0"
