"""Benchmarks of the WhatsApp service under real gunicorn: ``python -m bench`` (see docs/benchmarks.md)."""
