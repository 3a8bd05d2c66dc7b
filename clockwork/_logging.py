"""The package logger. Library code logs here and never prints."""

import logging

logger = logging.getLogger("clockwork")
logger.addHandler(logging.NullHandler())
