"""Helpers of the CONSOLE end-to-end suite: the browser (browser.py)."""
