"""Living with a generated repo through copier: scaffold it (``new``), scale it, see where it stands (``status``)."""
