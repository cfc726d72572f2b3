"""The dataset's documentation and figures: the README.md dataset card (card.py, sections.py), the
pictures (plots.py) and the quality figures and flags behind `python -m magpie_hpc report` (quality.py)."""
