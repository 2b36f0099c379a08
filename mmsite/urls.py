from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from downloads_app.urls import api_urlpatterns as downloads_api
from mmsite import views
from models_app.urls import api_urlpatterns as models_api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("setup/<str:token>/", views.setup, name="setup"),
    path("model-manager/", include(models_api + downloads_api)),
    path("", include("downloads_app.urls")),
    path("", include("models_app.urls")),
]

handler404 = "mmsite.views.not_found"
handler500 = "mmsite.views.server_error"
handler400 = "mmsite.views.bad_request"
