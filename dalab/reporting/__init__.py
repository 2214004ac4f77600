"""Reports from run folders: sweep plots (plots.py), sample strips (samples.py), HTML (html.py)."""
