"""Check what a shortened `clpose demo` left in DIR (clpose.demo_report.check_outputs).

Usage: python .ci/check_demo.py DIR
"""

import sys
from pathlib import Path

from clpose.demo_report import check_outputs

print(check_outputs(Path(sys.argv[1])))
