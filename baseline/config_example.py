"""The example rarenet.toml (docs/examples/rarenet.toml): every setting, commented, with
its default and what it does — generated from the settings themselves so it cannot
drift (tests/cli/test_config_example.py compares the file with `example_toml()`)."""

from __future__ import annotations

from rarenet.baseline.config import describe_settings

_HEADER = """\
# rarenet.toml — every setting with its default (commented out: the defaults apply).
# Precedence: defaults < this file < environment (RARENET_<SECTION>_<KEY>) < flags.
# Found at --config, $RARENET_CONFIG, or ./rarenet.toml. Durations: 90s, 15m, 14d;
# sizes: 16MiB. Reference: docs/configuration.md.
"""

# Values shown for [[webhooks]] instead of the empty defaults (a webhook needs a url).
_WEBHOOK_EXAMPLE = {"url": '"https://hooks.example.com/rarenet"', "name": '"oncall"'}


def example_toml() -> str:
    """The text of docs/examples/rarenet.toml."""
    lines = [_HEADER.rstrip("\n")]
    section = None
    for name, key, default, help_text in describe_settings():
        if name != section:
            section = name
            if name == "webhooks":
                lines += [
                    "",
                    "# Zero or more webhooks, each its own [[webhooks]] table.",
                    "# [[webhooks]]",
                ]
            else:
                lines += ["", f"[{name}]"]
        shown = _WEBHOOK_EXAMPLE.get(key, default) if name == "webhooks" else default
        lines += [f"# {help_text}", f"# {key} = {shown}"]
    return "\n".join(lines) + "\n"
