"""scenecap: self-hostable, asynchronous video understanding."""

__version__ = "0.1.0"
