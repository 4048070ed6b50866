from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import health, views
from .api import Me
from .forms import LoginForm

urlpatterns = [
    # The front page and the operations dashboard read several apps: whago.console (named, not imported).
    path("", include("whago.console.urls")),
    path("healthz", health.healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages without an icon link (the admin's, the receipt).
    path("favicon.ico", lambda request: HttpResponsePermanentRedirect(static("img/favicon.svg"))),
    path("signup/", views.signup, name="signup"),
    path("confirmar-email/<str:token>/", views.confirm_email, name="confirm_email"),
    path("confirmar-email/", views.resend_confirmation, name="resend_confirmation"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=LoginForm),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The e-mail signs "Equipe WHAGO" (SITE_NAME), not the host name of the request.
    path("password-reset/", auth_views.PasswordResetView.as_view(extra_email_context={"site_name": settings.SITE_NAME}),
         name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("invite/<str:token>/", views.accept_invitation, name="accept_invitation"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("painel/", views.dashboard, name="dashboard"),
    path("sem-empresa/", views.no_tenant, name="no_tenant"),
    path("configuracoes/", views.settings_page, name="settings"),
    path("configuracoes/convites/", views.invite, name="invite"),
    path("configuracoes/convites/<int:pk>/revogar/", views.revoke_invitation, name="revoke_invitation"),
    path("configuracoes/membros/<int:pk>/remover/", views.remove_member, name="remove_member"),
    path("configuracoes/membros/<int:pk>/papel/", views.change_role, name="change_role"),
    path("configuracoes/membros/<int:pk>/transferir/", views.transfer_ownership, name="transfer_ownership"),
    path("empresa/trocar/", views.switch_tenant, name="switch_tenant"),
    path("status/", views.status, name="status"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:pk>/revogar/", views.revoke_api_key, name="revoke_api_key"),
    path("", include("chips.urls")),
    path("", include("billing.urls")),
    path("", include("waha.urls")),
    path("api/v1/me/", Me.as_view(), name="api_me"),
    path("api/v1/", include("chips.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Its script is served from ?script and its style from static/: the CSP allows neither inline.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema", template_name="api/swagger_ui.html"),
         name="api_docs"),
    path("admin/", admin.site.urls),
]
