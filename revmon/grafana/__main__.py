"""`python -m revmon.grafana [DIR]`: write the dashboards' JSON (default `grafana/dashboards`)."""

from __future__ import annotations

import sys
from pathlib import Path

from revmon.grafana import DASHBOARDS_DIR, write

if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DASHBOARDS_DIR
    for path in write(target):
        print(path)
