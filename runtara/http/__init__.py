"""The server's HTTP endpoint (``--http-addr``): Prometheus metrics, health
probes and the web console.

It runs on threads of its own, never on the QUIC event loop: :mod:`server`
moves bytes (a bounded pool of threads, HTTP/1.0, one request per
connection), :mod:`app` routes a :class:`messages.Request` to its answer and
applies :mod:`access`'s rules, :mod:`probes` answers ``/healthz`` and
``/readyz``, :mod:`console` renders the console's pages (templates in
``templates/``, through :mod:`templating`) and carries out its actions through
:class:`runtara.admin.local.LocalAdmin`, and :mod:`endpoint` puts them
together for a running server. The metrics themselves are
:mod:`runtara.metrics`.
"""
