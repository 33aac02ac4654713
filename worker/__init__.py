"""Celery worker of the XTC service: claims jobs, runs xtc_core, uploads artifacts, records results."""
