import sys

from somna.cli import main

sys.exit(main())
