"""The task layer: the only part of chops that imports invoke. One module per collection; tasks.py composes them."""
