"""One conformance check per component kind (see ``simplug.registry.kinds``)."""
