import sys

from personaevo.cli import main

sys.exit(main())
