"""The exceptions revmon raises, all under one root.

::

    RevmonError
    ├── ConfigError      the configuration file or a REVMON_* variable is invalid
    ├── BrokerError      the Kafka broker cannot be started or reached
    ├── InputFileError   a file given on the command line cannot be read
    ├── OutputFileError  a file or directory given on the command line cannot be written
    ├── WebError         the HTTP endpoints cannot listen on web_host:web_port
    └── SourceError      a Prometheus read by `revmon report` cannot answer

A rejected *event* is not an exception: it is data (counted, logged, dead-lettered).
"""


class RevmonError(Exception):
    """Base of every error revmon raises on purpose; the CLI prints it as one line."""


class ConfigError(RevmonError):
    """The configuration is invalid: fix the key named in the message and start again."""


class BrokerError(RevmonError):
    """The broker could not be started or reached: check `broker:` and the `kafka:` keys."""


class InputFileError(RevmonError):
    """A file named on the command line is missing or unreadable: check the path."""


class OutputFileError(RevmonError):
    """A file or directory to write cannot be written: check that its directory exists."""


class WebError(RevmonError):
    """The HTTP endpoints cannot listen: free the port, or set `web_port` / `web_host`."""


class SourceError(RevmonError):
    """`revmon report --prometheus` got no usable answer: check the URL and its scrape jobs."""
