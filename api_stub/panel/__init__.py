"""The integrations panel: routes (``/panel``), session (who is acting, CSRF, flash), page (what
the page shows). docs/panel.md."""
