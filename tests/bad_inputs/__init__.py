"""A catalogue of bad inputs (``cases.py``) and how to observe what the code does with them."""
