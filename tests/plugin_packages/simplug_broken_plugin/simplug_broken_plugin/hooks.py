from simplug import hookimpl

import a_module_that_does_not_exist  # noqa: F401  - the failure under test


@hookimpl
def register_heads(register):
    register("never_seen", "simplug_broken_plugin.hooks:Nothing")
