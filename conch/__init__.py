"""conch: shared code for the workflow's scripts and the server.

Scripts that rules run stay thin and call into this package; the server imports the same
modules, so what is evaluated is what is served.
"""

__version__ = "0.1.0"
