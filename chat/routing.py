from django.urls import path

from . import consumers

websocket_urlpatterns = [
    # Channels routes ASGI apps with Django's path(); its stub wants a Django view.
    path("ws/rooms/<slug:slug>/", consumers.RoomConsumer.as_asgi()),  # type: ignore[arg-type]
]
