"""The server's HTTP endpoint (``--http-addr``): Prometheus metrics, health
probes and the web console.

It runs on a thread and an event loop of its own, never on the QUIC event
loop: :mod:`server` moves bytes (uvicorn, one request per connection, storage
work on a small thread pool), :mod:`connections` bounds what a client may
hold (connections per client and in all, a deadline for each request),
:mod:`app` routes a :class:`messages.Request` to its answer and applies
:mod:`access`'s rules (the read and operate credentials, :mod:`sessions` for
the console, failed checks by :mod:`clients`), :mod:`probes` answers
``/healthz`` and ``/readyz``, :mod:`console` renders the console's pages
(templates in ``templates/``, through :mod:`templating`, with the style sheet
and script of ``static/``) and carries out its actions through
:class:`runtara.admin.local.LocalAdmin`, and :mod:`endpoint` puts them
together for a running server. The metrics themselves are
:mod:`runtara.metrics`.
"""
