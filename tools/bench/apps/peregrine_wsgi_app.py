"""Peregrine's WSGI adapter on the WSGI scenarios' app: ``peregrine_wsgi.WSGIHandler(app)``.

Run: ``python -m peregrine_core tools.bench.apps.peregrine_wsgi_app:handler --port P
--host 127.0.0.1 --workers 1 --handler-threads N``. This is the handler ``peregrine wsgi
tools.bench.apps.wsgi_scenario_app:app`` builds (its ``make_handler``), but named by module
and attribute, so it runs from the checkout's ``src`` directories: ``peregrine wsgi`` and
``python -m peregrine_wsgi`` find the ``wsgi`` plugin through the installed package's entry
point, which a checkout on ``PYTHONPATH`` does not have.
"""

from __future__ import annotations

from peregrine_wsgi import WSGIHandler

from .wsgi_scenario_app import app

handler = WSGIHandler(app)
"""The handler instance the core's command line serves."""
