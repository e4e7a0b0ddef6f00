"""The compile pipeline: answers -> schema -> cross-field rules -> model -> blueprint -> checked, written repo.

Reads top to bottom: ``loader`` (YAML with lines) -> ``schema`` -> ``crossfield`` ->
``answers`` (typed) -> ``model`` (with ``sizing``, ``firewall``) -> ``engine`` (renders the
blueprint; ``extension`` is the Jinja bridge copier loads) -> ``outputs`` (checks) ->
``write`` (staging, atomic move) and ``cloudinit`` (user-data). ``pipeline`` strings the
front half together. Nothing here runs programs or imports lint or rehearse.
"""
