import sys

from colorgrid.cli import main

sys.exit(main())
