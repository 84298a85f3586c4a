"""The one exception type the toolkit raises for bad input.

The CLI turns it into a single line on stderr and a non-zero exit; library users
catch it to tell "your input is wrong" apart from bugs.
"""


class NgteachError(Exception):
    """Bad input or environment: the message names the problem for a person."""
