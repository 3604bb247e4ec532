"""``saga dev``: the whole stack for one sagas module, in one command, without Docker."""
