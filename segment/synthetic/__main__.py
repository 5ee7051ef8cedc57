"""python -m segment.synthetic --help"""

import sys

from segment.synthetic.cli import main

if __name__ == "__main__":
    sys.exit(main())
