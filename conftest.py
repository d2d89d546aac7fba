"""Repository-level conftest: pytester for the plugin's own end-to-end tests."""

pytest_plugins = ["pytester"]
