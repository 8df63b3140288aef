"""inferq: a Python client for the inferq job-queue inference service.

```python
from inferq import Client
client = Client()                      # INFERQ_URL / INFERQ_API_KEY
job = client.submit("mlp_small", {"x": np.ones((1, 64), np.float32)})
outputs = job.result(timeout=60)      # {"logits": np.ndarray}
```

:class:`Client` is synchronous, :class:`AsyncClient` the same API for asyncio; tensors travel as
numpy arrays in the binary framing; errors are the exceptions of :mod:`inferq.errors`; webhook
messages are checked with :func:`verify_webhook`.
"""

from .aio import AsyncClient, AsyncJob
from .client import Client, Job
from .errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    InferqError,
    JobCancelled,
    JobError,
    JobFailed,
    JobTimeout,
    NetworkError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
    WebhookVerificationError,
)
from .events import Event
from .speech import Segment, SpeechResult
from .tensors import Tensor
from .webhooks import sign_webhook, verify_webhook

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Job",
    "AsyncClient",
    "AsyncJob",
    "Event",
    "Tensor",
    "Segment",
    "SpeechResult",
    "verify_webhook",
    "sign_webhook",
    "InferqError",
    "NetworkError",
    "APIError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ValidationError",
    "TooManyRequests",
    "QuotaExceeded",
    "RateLimited",
    "Overloaded",
    "ServerError",
    "ServiceUnavailable",
    "JobError",
    "JobFailed",
    "JobCancelled",
    "JobTimeout",
    "WebhookVerificationError",
]
