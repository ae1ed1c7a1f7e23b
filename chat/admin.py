from django.contrib import admin

from .models import Action, Membership, Message, Request, Room, RoomEvent

admin.site.register([Room, Membership, Request, Message, Action, RoomEvent])
