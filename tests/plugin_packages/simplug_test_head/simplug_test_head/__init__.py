"""A third-party simplug plugin: a projection head."""
