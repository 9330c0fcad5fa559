"""Errors the user can act on.

Everything raised as :class:`SsSegError` carries a one-line message that names the problem
(the file, the shape, the offending values); the CLI prints it without a traceback and the
plugin shows it as a notification.
"""


class SsSegError(Exception):
    """A problem with the user's input or settings, explained in one line."""


class InputError(SsSegError):
    """An input file or array is missing, unreadable or inconsistent."""


class AnnotationError(SsSegError):
    """The annotations cannot be used for training (no slice, bad label values...)."""


class ModelCardError(SsSegError):
    """An unknown foundation model id, or a model card that cannot be used as asked."""


class TrainingCancelled(SsSegError):
    """Training was stopped on request before it produced a model."""
