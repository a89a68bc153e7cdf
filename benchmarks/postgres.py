"""A fresh PostgreSQL database for a benchmark's Prefect server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import os
import subprocess


def fresh_database_url(name: str) -> str:
    """Drop and create database ``name``; return its asyncpg URL for Prefect."""
    host = os.environ.get("CUTLINE_BENCH_PGHOST", "127.0.0.1")
    user = os.environ.get("CUTLINE_BENCH_PGUSER", "postgres")
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(
            ["psql", "-h", host, "-U", user, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True,
            capture_output=True,
        )
    return f"postgresql+asyncpg://{user}@{host}:5432/{name}"
