"""The one error type users see: a bad configuration or missing input, reported in one line."""


class ConfigError(Exception):
    """Bad user input (config value, scheme, depth, data files): printed as one line, exit status 2."""
