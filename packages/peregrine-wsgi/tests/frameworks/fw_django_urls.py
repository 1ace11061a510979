"""Views and URLs of the minimal Django project.

``/notes/`` reads the database (raw SQL on ``fw_note`` and an ORM count of users);
``/notes/new/`` is a CSRF-protected form that inserts a note and redirects (POST, redirect,
GET); ``/browser/`` is a form whose script submits it on load, answered with the saved note;
``/whoami/`` shows what Django made of the request; ``/admin/`` is Django's admin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Final

from django.contrib import admin  # type: ignore[import-untyped]
from django.contrib.auth.models import User  # type: ignore[import-untyped]
from django.db import connection  # type: ignore[import-untyped]
from django.http import (  # type: ignore[import-untyped]
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template import engines  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]

FORM: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>New note</title></head><body>
<h1>New note</h1>
<form method="post" action="/notes/new/">{% csrf_token %}
<textarea name="body"></textarea><button type="submit">Save</button></form>
</body></html>
"""

BROWSER_FORM: Final = """{% load static %}<!doctype html>
<html><head><meta charset="utf-8"><title>Django on Peregrine</title>
<link rel="stylesheet" href="{% static 'fw/site.css' %}"></head><body>
<h1>Hello from Django</h1>
<form id="f" method="post" action="/browser/">{% csrf_token %}
<input type="text" name="body" value=""></form>
<script>
  document.body.dataset.h1Color = getComputedStyle(document.querySelector("h1")).color;
  if (location.hash !== "#no-submit") {
    document.forms.f.elements.body.value = "from chromium \\u00e0 Django <i>ok</i>";
    document.forms.f.submit();
  }
</script>
</body></html>
"""

BROWSER_RESULT: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>Saved</title></head><body>
<p id="saved">Saved: {{ body }}</p><p id="stored">Stored as note {{ note_id }}: {{ stored }}</p>
</body></html>
"""


def _render(template: str, request: Any, **context: Any) -> Any:
    return HttpResponse(engines["django"].from_string(template).render(context, request))


def _insert_note(body: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO fw_note (body) VALUES (%s)", [body])
        note_id: int = cursor.lastrowid
    return note_id


def notes(request: HttpRequest) -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, body FROM fw_note ORDER BY id")
        rows = [{"id": row[0], "body": row[1]} for row in cursor.fetchall()]
    return JsonResponse({"notes": rows, "users": User.objects.count()})


def new_note(request: HttpRequest) -> Any:
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if request.method == "POST":
        body = request.POST.get("body", "")
        if not body:
            return HttpResponseBadRequest("a note needs a body")
        _insert_note(body)
        return HttpResponseRedirect("/notes/")
    return _render(FORM, request)


def browser(request: HttpRequest) -> Any:
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if request.method == "POST":
        note_id = _insert_note(request.POST["body"])
        with connection.cursor() as cursor:
            cursor.execute("SELECT body FROM fw_note WHERE id = %s", [note_id])
            (stored,) = cursor.fetchone()
        return _render(BROWSER_RESULT, request, body=request.POST["body"], note_id=note_id, stored=stored)
    return _render(BROWSER_FORM, request)


def whoami(request: HttpRequest) -> Any:
    return JsonResponse(
        {
            "scheme": request.scheme,
            "host": request.get_host(),
            "path": request.path,
            "path_info": request.path_info,
            "query": request.GET.dict(),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "server_port": request.META.get("SERVER_PORT"),
            "absolute_uri": request.build_absolute_uri(),
        }
    )


def _upload(request: HttpRequest) -> Any:
    """A multipart upload (no CSRF: an API endpoint): each file's size, SHA-256 and where Django kept it."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    files = [
        {
            "field": field,
            "name": f.name,
            "size": f.size,
            "sha256": hashlib.sha256(b"".join(f.chunks())).hexdigest(),
            "on_disk": hasattr(f, "temporary_file_path"),
        }
        for field, f in request.FILES.items()
    ]
    return JsonResponse({"fields": request.POST.dict(), "files": files})


upload = csrf_exempt(_upload)


def stream(request: HttpRequest) -> Any:
    def pieces() -> Iterator[bytes]:
        for i in range(int(request.GET.get("n", "3"))):
            yield f"line {i}\n".encode()

    return StreamingHttpResponse(pieces(), content_type="text/plain")


urlpatterns = [
    path("upload/", upload),
    path("stream/", stream),
    path("notes/", notes),
    path("notes/new/", new_note),
    path("browser/", browser),
    path("whoami/", whoami),
    path("admin/", admin.site.urls),
]
