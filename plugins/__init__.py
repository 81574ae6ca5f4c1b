"""The suite's built-in task plugins. Each subpackage exposes ``register(register)``, named by an entry point
in the project's ``pyproject.toml`` (the same mechanism third-party plugins use)."""
