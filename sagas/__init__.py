"""Example sagas (the payments transfer, retry-forward) and the demo that runs them.

Not in the wheel: they run from a checkout of the repository (``saga`` finds
``--sagas`` modules in the current folder).
"""
