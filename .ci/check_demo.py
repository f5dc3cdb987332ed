"""Check what a shortened `clpose demo` left in DIR (clpose.demo.check_outputs). Usage: python .ci/check_demo.py DIR"""

import sys
from pathlib import Path

from clpose.demo import check_outputs

print(check_outputs(Path(sys.argv[1])))
