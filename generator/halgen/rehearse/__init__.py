"""``halgen rehearse``: run a rendered stack on this machine, on loopback addresses only.

The stack's own files (a rehearsal render) start real nginx, HAProxy, Starlet or Starman,
PostgreSQL, Redis and Sentinel in dependency order; drills break one part at a time
and measure the figure that matters; a benchmark compares the generated load
balancer (nginx and its HAProxy) with the seed document's nginx config. Everything started is stopped again, also on
Ctrl-C or failure, and the temporary directory is removed.
"""
