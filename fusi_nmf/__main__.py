import sys

from fusi_nmf.cli import main

sys.exit(main())
