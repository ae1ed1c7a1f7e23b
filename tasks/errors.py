"""The two kinds of failure the agent distinguishes when it talks to other services."""


class ServiceError(Exception):
    """A call to OpenAI or Linear failed; the message is safe to show to the room."""


class TransientError(ServiceError):
    """Worth retrying with backoff: rate limits, 5xx, timeouts, dropped links."""


class PermanentError(ServiceError):
    """Retrying cannot help: bad credentials, invalid input, a refused document."""
