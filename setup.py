"""Maps the service folders into the vigil namespace; everything else lives in pyproject.toml."""
from setuptools import find_packages, setup

SERVICES = {
    "vigil.collectors": "collectors",
    "vigil.analytics": "analytics",
    "vigil.alerting": "alerting",
    "vigil.sinks": "sinks",
}

packages = find_packages(include=["vigil", "vigil.*"])
package_dir = {"vigil": "vigil"}
for namespace, folder in SERVICES.items():
    package_dir[namespace] = folder
    packages += [namespace] + [f"{namespace}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
