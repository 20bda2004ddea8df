"""Built-in models; importing this package registers them."""

from zoo.models import deep_nested, mlp, transformer  # noqa: F401
