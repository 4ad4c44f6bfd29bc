"""Built-in components. Each subpackage is a plugin registered through simplug's own
entry points, exactly as a third-party package would register its own."""
