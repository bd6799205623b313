"""mkdocs-material base config, page templates and JS views; installed as the package `atlas_build.site_templates`."""
