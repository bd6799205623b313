"""Package layout that pyproject.toml cannot express: the repository's top-level `site_templates/` folder is
installed as the subpackage `atlas_build.site_templates` (read with importlib.resources), in wheels and editable
installs alike. Everything else is declared in pyproject.toml."""

from setuptools import find_namespace_packages, setup

TEMPLATES = ["atlas_build.site_templates", *(
    f"atlas_build.site_templates.{name}"
    for name in find_namespace_packages(where="site_templates", exclude=["*__pycache__"]))]

setup(
    packages=[*find_namespace_packages(include=["atlas_build", "atlas_build.*"], exclude=["*__pycache__"]), *TEMPLATES],
    package_dir={"atlas_build.site_templates": "site_templates"},
    package_data={"atlas_build": ["py.typed"], "atlas_build.scaffold": ["*"], **{name: ["*"] for name in TEMPLATES}},
    exclude_package_data={name: ["*.pyc"] for name in TEMPLATES},
)
