from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import agui, governance, policies, schedules, triggers, views, webhooks

urlpatterns = [
    path("auth/token", views.TokenView.as_view(), name="api-token"),
    path("rooms", views.RoomsView.as_view(), name="api-rooms"),
    path("rooms/<slug:slug>", views.RoomView.as_view(), name="api-room"),
    path("rooms/<slug:slug>/members", views.MembersView.as_view(), name="api-members"),
    path(
        "rooms/<slug:slug>/members/<str:username>",
        views.MemberView.as_view(),
        name="api-member",
    ),
    path(
        "rooms/<slug:slug>/requests",
        views.RoomRequestsView.as_view(),
        name="api-room-requests",
    ),
    path("rooms/<slug:slug>/events", views.RoomEventsView.as_view(), name="api-events"),
    path("rooms/<slug:slug>/agui", agui.AguiRunView.as_view(), name="api-agui"),
    path(
        "rooms/<slug:slug>/agui/connect",
        agui.AguiConnectView.as_view(),
        name="api-agui-connect",
    ),
    path("requests/<str:request_id>", views.RequestView.as_view(), name="api-request"),
    path(
        "requests/<str:request_id>/cancel",
        views.RequestCancelView.as_view(),
        name="api-request-cancel",
    ),
    path(
        "requests/<str:request_id>/decide",
        views.RequestDecideView.as_view(),
        name="api-request-decide",
    ),
    path("actions", views.ActionsView.as_view(), name="api-actions"),
    path("actions/<str:action_id>", views.ActionView.as_view(), name="api-action"),
    path(
        "actions/<str:action_id>/approve",
        views.ActionApproveView.as_view(),
        name="api-action-approve",
    ),
    path(
        "actions/<str:action_id>/deny",
        views.ActionDenyView.as_view(),
        name="api-action-deny",
    ),
    path(
        "actions/<str:action_id>/retract",
        policies.ActionRetractView.as_view(),
        name="api-action-retract",
    ),
    path(
        "rooms/<slug:slug>/policies",
        policies.PoliciesView.as_view(),
        name="api-policies",
    ),
    path(
        "rooms/<slug:slug>/policies/<str:rule_id>",
        policies.PolicyView.as_view(),
        name="api-policy",
    ),
    path(
        "rooms/<slug:slug>/webhooks",
        webhooks.WebhooksView.as_view(),
        name="api-webhooks",
    ),
    path(
        "rooms/<slug:slug>/webhooks/<str:webhook_id>",
        webhooks.WebhookView.as_view(),
        name="api-webhook",
    ),
    path(
        "rooms/<slug:slug>/webhooks/<str:webhook_id>/rotate",
        webhooks.WebhookRotateView.as_view(),
        name="api-webhook-rotate",
    ),
    path("rooms/<slug:slug>/audit", governance.AuditView.as_view(), name="api-audit"),
    path("rooms/<slug:slug>/stats", governance.StatsView.as_view(), name="api-stats"),
    path(
        "rooms/<slug:slug>/triggers",
        triggers.TriggersView.as_view(),
        name="api-triggers",
    ),
    path(
        "rooms/<slug:slug>/triggers/<str:trigger_id>",
        triggers.TriggerView.as_view(),
        name="api-trigger",
    ),
    path(
        "rooms/<slug:slug>/schedules",
        schedules.SchedulesView.as_view(),
        name="api-schedules",
    ),
    path(
        "rooms/<slug:slug>/schedules/<str:schedule_id>",
        schedules.ScheduleView.as_view(),
        name="api-schedule",
    ),
    path("tools", policies.ToolsView.as_view(), name="api-tools"),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's set-up script as a file: the CSP allows no
    # inline script. Swagger UI writes <style> elements of its own, so this page
    # alone allows inline styles.
    path(
        "docs",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema")
        ),
        name="api-docs",
    ),
]
