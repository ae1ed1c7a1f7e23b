"""`POST /hooks/<id>`: a trigger's deliveries (contract: "`POST /hooks/<id>`").

A plain Django view, not DRF: no login, no CSRF, no cookies, no throttle, and not in
the OpenAPI document. Checks 1 to 3 (the trigger, the size, the type) are here,
before the body is read; the rest is `services.trigger_deliver`. Every answer is
JSON. The model runs afterwards in the worker, as for any request.
"""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from chat import services
from chat.models import Trigger
from chat.services.triggers import trigger_id_valid


def _answer(status: int, body: dict[str, object]) -> JsonResponse:
    return JsonResponse(body, status=status)


@csrf_exempt
def hook(request: HttpRequest, trigger_id: str) -> JsonResponse:
    if request.method != "POST":
        response = _answer(405, {"detail": f'Method "{request.method}" not allowed.'})
        response["Allow"] = "POST"
        return response
    trigger = (
        Trigger.objects.filter(pk=trigger_id).first()
        if trigger_id_valid(trigger_id)
        else None
    )
    if trigger is None:
        return _answer(404, {"detail": "No such trigger."})
    body = _body(request, settings.TRIGGER_MAX_BYTES)
    if body is None:
        return _answer(
            413,
            {"detail": f"The body is larger than {settings.TRIGGER_MAX_BYTES} bytes."},
        )
    if (request.content_type or "").lower() != "application/json":
        return _answer(415, {"detail": "The body must be application/json."})
    headers = {name.lower(): value for name, value in request.headers.items()}
    answer = services.trigger_deliver(trigger=trigger, headers=headers, body=body)
    response = _answer(answer.status, answer.body)
    for name, value in answer.headers.items():
        response[name] = value
    return response


def _body(request: HttpRequest, limit: int) -> bytes | None:
    """The body, or None past `limit` bytes: by its Content-Length when it gives
    one (nothing read), else read up to one byte past the limit."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body
