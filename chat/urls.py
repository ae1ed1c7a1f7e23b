from django.urls import path

from . import decide, views

urlpatterns = [
    path("", views.room_list, name="room-list"),
    path("rooms/<slug:slug>/", views.room_detail, name="room"),
    path("rooms/<slug:slug>/members", views.room_member_add, name="room-member-add"),
    path("decide/<str:token>/", decide.decide, name="decide"),
    path("inbox/", decide.inbox, name="inbox"),
]
