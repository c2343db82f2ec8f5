"""Errors that carry a message meant for the user: what is wrong and what to do."""


class RuleboundError(RuntimeError):
    """A problem the user can fix; the message names it and says how."""


class ConfigError(RuleboundError):
    """The configuration asks for something that cannot work."""


class DataError(RuleboundError):
    """An input dataset does not have the shape a stage needs."""
