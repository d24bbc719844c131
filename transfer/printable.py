"""Text for a message: control characters escaped, so a file, folder or class name cannot drive the terminal.

Every message that names a path or a name taken from a user's files goes through printable(): a newline
in a file name would otherwise split the one error line in two, and an ESC would reach the terminal raw.
"""


def printable(value: object) -> str:
    """str(value) with every unprintable character escaped (\\n, \\x1b, ...)."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in str(value))
